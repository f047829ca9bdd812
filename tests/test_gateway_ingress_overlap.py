"""The gateway routes a poll's updates while their ingress write runs (a turn's first write then goes
to disk alongside it), and still moves the getUpdates offset only once that write is durable. While
the ingress log is failing, updates wait for a write that succeeds before they are routed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from actors.registry import ConversationRegistry
from actors.runtime import Actor
from actors.supervisor import Supervisor
from channels.telegram.client import TelegramClient
from channels.telegram.gateway import TelegramChannel, TelegramGateway
from channels.telegram.sender import TelegramSender
from ops.backoff import Backoff
from stores import InMemoryIngressLog, StoreError
from tests.e2e_support import assistant_env, fast_settings
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer


class HeldIngress(InMemoryIngressLog):
    """Appends wait for `release`; while `failing`, they raise StoreError instead."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.release.set()
        self.failing = False
        self.appending = asyncio.Event()
        self.appended: list[list[int]] = []

    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        self.appending.set()
        await self.release.wait()
        if self.failing:
            raise StoreError("disk full")
        await super().append(updates)
        self.appended.append([update["update_id"] for update in updates])


class Seen(Actor[Any]):
    """Records what reached the conversation, and whether its update was durable by then."""

    def __init__(self, conversation_id: str, ingress: HeldIngress, seen: list[tuple[str, bool]]) -> None:
        super().__init__(f"conversation:{conversation_id}", 8)
        self._ingress, self._seen = ingress, seen

    async def handle(self, message: Any) -> None:
        durable = any(message.update_id in ids for ids in self._ingress.appended)
        self._seen.append((message.text, durable))


@asynccontextmanager
async def running_gateway(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, ingress: HeldIngress
) -> AsyncIterator[tuple[TelegramGateway, list[tuple[str, bool]]]]:
    settings = fast_settings(assistant_env(tg, llm, tmp_path / "store"))
    seen: list[tuple[str, bool]] = []
    supervisor = Supervisor("test", backoff=settings.backoff, max_restarts=0, window_seconds=1.0)
    registry: ConversationRegistry[Any] = ConversationRegistry(
        lambda cid: Seen(cid, ingress, seen), supervisor, idle_seconds=60
    )
    async with TelegramClient(settings.telegram, pool_size=2, read_timeout=5.0) as client:
        channel = TelegramChannel(TelegramSender(client.bot, Backoff(settings.backoff)), ingress)
        gateway = TelegramGateway(settings, registry, ingress, bot=client.bot, channel=channel)
        task = asyncio.create_task(gateway.run())
        try:
            await asyncio.wait_for(gateway.polling.wait(), 10)
            yield gateway, seen
        finally:
            gateway.stop()
            ingress.release.set()
            await asyncio.wait_for(task, 10)
            await registry.stop(1.0)


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_an_update_is_routed_while_its_ingress_write_runs_and_acknowledged_after_it(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    ingress = HeldIngress()
    async with running_gateway(tg, llm, tmp_path, ingress) as (_, seen):
        ingress.release.clear()
        ingress.appending.clear()
        polls = tg.calls.count("getUpdates")
        tg.add_text_message(42, "hello")
        await until(lambda: seen)  # routed with its write still held
        assert seen == [("hello", False)]
        await asyncio.sleep(0.2)
        assert tg.calls.count("getUpdates") <= polls + 1  # no poll past it while its write is held
        ingress.release.set()
        await tg.await_calls("getUpdates", count=polls + 2, timeout=5)
        assert len(ingress.appended) == 1


async def test_while_the_ingress_log_fails_updates_are_routed_only_after_a_write_succeeds(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    ingress = HeldIngress()
    async with running_gateway(tg, llm, tmp_path, ingress) as (gateway, seen):
        ingress.failing = True
        tg.add_text_message(42, "first")
        await until(lambda: gateway.ingress_failing)
        assert seen == [("first", False)]  # the healthy log's way: routed as the write ran, which failed
        tg.add_text_message(42, "second")
        await tg.await_calls("getUpdates", count=tg.calls.count("getUpdates") + 2, timeout=10)
        assert [text for text, _ in seen] == ["first"]  # nothing routed while every write fails
        ingress.failing = False
        await until(lambda: len(seen) == 3, timeout=10)
        assert seen[1:] == [("first", True), ("second", True)]  # the copies, once durable
        assert not gateway.ingress_failing
