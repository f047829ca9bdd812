"""One deadline per user message, from its arrival, over all the model and tool work of its turn:
"while the model is down, a user hears so within 60 seconds of writing" (here: within the 2 s
budget of the fast test settings)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from actors import texts
from tests.e2e_support import assistant_env, fast_settings, running
from tests.fakes.llm_server import CallTools, FakeLLMRequest, FakeLLMServer, Hang, Reply
from tests.fakes.telegram_server import FakeTelegramServer
from tests.mcp_helpers import stdio_settings

BUDGET = 2.0  # fast_settings' retry budget: the deadline of every message's turn


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> dict[str, str]:
    return assistant_env(tg, llm, tmp_path / "store")


async def test_a_model_that_keeps_the_connection_alive_is_cut_off_at_the_deadline(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    # A byte of whitespace every 0.2 s, as OpenRouter sends: no read ever times out.
    llm.script(Reply("far too late", keepalive_seconds=8.0))
    async with running(fast_settings(env)):
        sent_at = time.monotonic()
        tg.add_text_message(42, "hello?")
        [notice] = await tg.await_sent(chat_id=42, timeout=15)
        waited = time.monotonic() - sent_at
    assert notice.text == texts.TURN_TIMED_OUT
    assert waited < BUDGET + 1.5


async def test_a_message_queued_behind_a_failing_turn_hears_within_its_own_deadline(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    def model_down(request: FakeLLMRequest) -> Hang:
        return Hang()

    llm.script(model_down)
    async with running(fast_settings(env)):
        sent_at = time.monotonic()
        tg.add_text_message(42, "first")
        tg.add_text_message(42, "second")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=15)
        waited = time.monotonic() - sent_at
    assert waited < BUDGET + 1.5  # not a budget per turn, one after the other
    assert sent[0].text in (texts.TURN_TIMED_OUT, texts.MODEL_UNAVAILABLE)
    assert sent[1].text == texts.TURN_TIMED_OUT


async def test_every_step_and_tool_of_a_turn_counts_against_one_deadline(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    # Each step is quick, each tool call takes 0.9 s: a fresh budget per step never runs out.
    def keep_calling(request: FakeLLMRequest) -> CallTools:
        return CallTools([("fake__slow", {"seconds": 0.9})])

    llm.script(keep_calling)
    async with running(fast_settings(env), {"fake": stdio_settings(timeout=30)}) as system:
        connection = system.mcp_actors["fake"].connection
        await asyncio.wait_for(connection.wait_until(lambda c: bool(c.tools())), 20)
        sent_at = time.monotonic()
        tg.add_text_message(42, "work hard")
        [notice] = await tg.await_sent(chat_id=42, timeout=20)
        waited = time.monotonic() - sent_at
    assert notice.text == texts.TURN_TIMED_OUT
    assert waited < BUDGET + 1.5
    assert 2 <= len(llm.requests) <= 3  # it got going, and was cut off within the deadline
