"""SIGTERM ends `python main.py` with status 0 within the grace period, whatever it is doing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e_support import AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.moto_server import closed_port_endpoint
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.slow


async def wait_for_log(process: AssistantProcess, event: str, timeout: float = 20.0) -> None:
    """Until the process has logged `event` (its log is a file: there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while f'"event": "{event}"' not in process.log_text():
        assert process.process is not None
        assert process.process.poll() is None, process.log_text()[-2000:]
        assert time.monotonic() < deadline, f"no {event} within {timeout} s: {process.log_text()[-2000:]}"
        await asyncio.sleep(0.05)


async def test_sigterm_while_telegram_is_unreachable_at_start_exits_0_at_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    # No network yet at boot: the gateway retries getMe against a port where nothing listens.
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_API_BASE_URL=closed_port_endpoint() + "/bot")
    process = AssistantProcess({**env, "LOG_LEVEL": "WARNING"}, tmp_path / "assistant.log")
    process.start()
    try:
        await wait_for_log(process, "telegram_start_retry")
        started = time.monotonic()
        exit_code = await asyncio.to_thread(process.terminate, 10)
        assert exit_code == 0, process.log_text()[-2000:]
        assert time.monotonic() - started < 3.0
    finally:
        process.ensure_dead()
