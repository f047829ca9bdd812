"""Opening and closing: what was opened is closed, when opening fails half-way and when a stop step fails."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from actors.registry import ConversationRegistry
from app.system import AssistantSystem
from app.system import _release_evicted as release_evicted
from llm import AssistantRecord, ToolCall, estimate_tokens
from stores import IngressLog, StoreError
from tests.e2e_support import assistant_env, fast_settings, running
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer

# -- the stores' base: a failed open closes what it opened -------------------------------------------


class TwoFileLog(IngressLog):
    """An ingress log that opens two files; the second can be made to fail (a missing directory)."""

    def __init__(self, first: Path, second: Path, *, close_fails: bool = False) -> None:
        self.paths = (first, second)
        self.fds: list[int] = []
        self.close_fails = close_fails
        self.closes = 0

    async def open(self) -> None:
        for path in self.paths:
            try:
                self.fds.append(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot open {path.name}") from exc

    async def close(self) -> None:
        self.closes += 1
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)
        if self.close_fails:
            raise StoreError("the disk went away")

    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    async def done(self, update_id: int) -> None:
        raise NotImplementedError

    async def pending(self) -> list[dict[str, Any]]:
        return []


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_a_store_whose_open_fails_half_way_closes_what_it_opened(tmp_path: Path) -> None:
    log = TwoFileLog(tmp_path / "first", tmp_path / "missing" / "second")
    with pytest.raises(StoreError, match="cannot open second"):
        async with log:
            pytest.fail("a failed open must not enter the block")
    assert log.closes == 1
    assert log.fds == []
    assert (tmp_path / "first").exists(), "the first file was opened before the failure"


async def test_a_close_failing_after_a_failed_open_does_not_hide_why_the_open_failed(tmp_path: Path) -> None:
    log = TwoFileLog(tmp_path / "first", tmp_path / "missing" / "second", close_fails=True)
    with pytest.raises(StoreError, match="cannot open second") as raised:
        await log.__aenter__()
    assert any("the disk went away" in note for note in raised.value.__notes__)


async def test_a_store_opened_and_left_normally_is_closed_once(tmp_path: Path) -> None:
    log = TwoFileLog(tmp_path / "first", tmp_path / "second")
    async with log:
        fds = list(log.fds)
        assert all(is_open(fd) for fd in fds)
    assert log.closes == 1
    assert not any(is_open(fd) for fd in fds)


# -- the system: every stop step runs, even after one that failed ----------------------------------


def open_connections_to(port: int) -> int:
    """Sockets of this process connected to 127.0.0.1:`port` (Linux /proc), TIME_WAIT aside."""
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            sockets.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed while we looked
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and f"socket:[{fields[9]}]" in sockets:
                count += 1
    return count


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts sockets through Linux /proc")


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> dict[str, str]:
    return assistant_env(tg, llm, tmp_path / "store")


@needs_proc
async def test_a_stopped_system_leaves_no_connection_to_telegram_open(
    tg: FakeTelegramServer, env: dict[str, str]
) -> None:
    port = urlsplit(tg.base_url).port
    assert port is not None
    async with running(fast_settings(env)):
        tg.add_text_message(42, "hello")
        await tg.await_sent(chat_id=42, count=1, timeout=10)
        assert open_connections_to(port) >= 2, "the counter sees the sending and the polling connections"
    assert open_connections_to(port) == 0


@needs_proc
async def test_a_failing_stop_step_does_not_keep_the_later_ones_from_closing_their_parts(
    tg: FakeTelegramServer, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one fault no real peer can cause: a bug in a stop step of our own.
    drain = ConversationRegistry.stop

    async def drain_then_fail(self: ConversationRegistry[Any], grace_seconds: float) -> None:
        await drain(self, grace_seconds)
        raise RuntimeError("draining the actors failed")

    monkeypatch.setattr(ConversationRegistry, "stop", drain_then_fail)
    port = urlsplit(tg.base_url).port
    assert port is not None
    system = AssistantSystem(fast_settings(env), {}, mode="telegram")
    task = asyncio.create_task(system.run(install_signal_handlers=False), name="assistant")
    await asyncio.wait_for(system.started.wait(), 30)
    tg.add_text_message(42, "hello")
    await tg.await_sent(chat_id=42, count=1, timeout=10)
    system.request_stop()
    with pytest.raises(RuntimeError, match="draining the actors failed"):
        await asyncio.wait_for(task, 30)
    assert open_connections_to(port) == 0, "the sender's and the poller's clients are closed all the same"


# -- after evictions: what only the evicted conversations used goes ------------------------------------


def test_the_release_after_evictions_forgets_the_remembered_token_estimates() -> None:
    call = AssistantRecord(text="", tool_calls=(ToolCall("1", "lookup", {"q": "x" * 100}),))
    alone = sys.getrefcount(call)
    estimate_tokens(call)
    assert sys.getrefcount(call) == alone + 1  # remembered: its tool calls are costly to estimate
    release_evicted()
    assert sys.getrefcount(call) == alone


async def test_a_live_conversation_keeps_a_compact_instance_dict(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    # Past 29 attributes CPython gives up an instance's key-sharing dict for a full one: 1.6 KB instead
    # of 0.3 for every live conversation. An attribute more belongs in one of the actor's parts.
    async with running(fast_settings(env)) as system:
        tg.add_text_message(42, "hello")
        await tg.await_sent(chat_id=42, count=1, timeout=10)
        assert system.registry is not None
        actor = system.registry.get("42")
        assert actor is not None
        assert len(vars(actor)) <= 29, sorted(vars(actor))
