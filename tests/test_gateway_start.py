"""The gateway's start before its first poll: getMe and deleteWebhook go out together (one round
trip to Telegram, not two), both end before the first getUpdates, and a refusal of either still
ends the gateway with Telegram's own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from telegram.error import InvalidToken

from actors.registry import ConversationRegistry
from actors.supervisor import Supervisor
from channels.telegram.client import TelegramClient
from channels.telegram.gateway import TelegramChannel, TelegramGateway
from channels.telegram.sender import TelegramSender
from ops.backoff import Backoff
from stores import InMemoryIngressLog
from tests.e2e_support import assistant_env, fast_settings
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer
from tests.test_e2e_gateway_faults import with_changes


@asynccontextmanager
async def gateway_of(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, poll_timeout_seconds: int | None = None
) -> AsyncIterator[TelegramGateway]:
    settings = fast_settings(assistant_env(tg, llm, tmp_path / "store"))
    if poll_timeout_seconds is not None:
        settings = with_changes(settings, telegram={"poll_timeout_seconds": poll_timeout_seconds})
    supervisor = Supervisor("test", backoff=settings.backoff, max_restarts=0, window_seconds=1.0)
    registry: ConversationRegistry[Any] = ConversationRegistry(
        lambda _: pytest.fail("no actor"), supervisor, idle_seconds=60
    )
    ingress = InMemoryIngressLog()
    async with TelegramClient(settings.telegram, pool_size=2, read_timeout=5.0) as client:
        channel = TelegramChannel(TelegramSender(client.bot, Backoff(settings.backoff)), ingress)
        yield TelegramGateway(settings, registry, ingress, bot=client.bot, channel=channel)


async def test_get_me_and_delete_webhook_go_out_together_before_the_first_poll(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    # getMe fails once (a 502) and is retried after the backoff's pause: deleteWebhook, made at
    # the same time, is not kept waiting for it. Made one after the other, deleteWebhook would come
    # after the retried getMe.
    tg.fail_next("getMe", 502)
    async with gateway_of(tg, llm, tmp_path) as gateway:
        task = asyncio.create_task(gateway.run())
        try:
            await asyncio.wait_for(gateway.polling.wait(), 10)
        finally:
            gateway.stop()
            await asyncio.wait_for(task, 10)
    start = [call for call in tg.calls if call in {"getMe", "deleteWebhook", "getUpdates"}]
    assert sorted(start[:2]) == ["deleteWebhook", "getMe"]  # in either order: they were in flight together
    assert start[2:4] == ["getMe", "getUpdates"]
    assert gateway.identity is not None
    assert gateway.identity.username


async def test_a_refused_token_ends_the_gateway_with_invalid_token(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    tg.fail_next("getMe", 401, "Unauthorized")
    async with gateway_of(tg, llm, tmp_path) as gateway:
        with pytest.raises(InvalidToken):
            await asyncio.wait_for(gateway.run(), 10)
    assert "getUpdates" not in tg.calls


async def test_stop_ends_a_long_poll_at_once_and_leaves_nothing_running(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    async with gateway_of(tg, llm, tmp_path, poll_timeout_seconds=30) as gateway:
        task = asyncio.create_task(gateway.run())
        await asyncio.wait_for(gateway.polling.wait(), 10)
        await tg.await_calls("getUpdates", count=2, timeout=10)  # the first is short; the second, 30 s, is under way
        before = {t for t in asyncio.all_tasks() if t is not task}
        gateway.stop()
        await asyncio.wait_for(task, 2)  # not the 30 s the poll would take
    assert {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()} == set()
