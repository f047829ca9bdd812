"""kill -9 in the middle of a streamed answer: after the restart it is finished once, never sent twice."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from channels.telegram import to_telegram_html
from stores.file import conversation_file_name
from tests.e2e_support import SHIPPED, AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeLLMRequest, FakeLLMServer, Reply
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.slow

GROUP = -100_700
LONG = " ".join(f"word{index}" for index in range(3000))
AFTER = "The answer, written again after the restart."


def process_with_fast_previews(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> AssistantProcess:
    config = tmp_path / "config.yml"
    shipped = SHIPPED.read_text()
    assert "edit_interval_seconds: 2 " in shipped
    config.write_text(shipped.replace("edit_interval_seconds: 2 ", "edit_interval_seconds: 0.2 "))
    env = assistant_env(tg, llm, tmp_path / "store", ASSISTANT_CONFIG=str(config))
    return AssistantProcess(env, tmp_path / "assistant.log")


def slow_then_quick(llm: FakeLLMServer, slow: int) -> None:
    """The first `slow` requests write slowly (the process is killed meanwhile); later ones answer at once."""
    left = [slow]

    def handler(request: FakeLLMRequest) -> Reply | None:
        if request.last_user_text.endswith("crash test") and left[0] > 0:
            left[0] -= 1
            return Reply(LONG, first_token_delay=0.05, chars_per_second=150)
        if request.last_user_text.endswith("crash test"):
            return Reply(AFTER)
        return None

    llm.script(handler)


def records(tmp_path: Path, conversation_id: str) -> list[dict[str, Any]]:
    path = tmp_path / "store" / conversation_file_name(conversation_id)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def until_recorded(tmp_path: Path, conversation_id: str, kind: str, timeout: float = 10) -> None:
    # Another process writes the store: reading its file again is the only way to wait on it.
    deadline = time.monotonic() + timeout
    while not any(record.get("type") == kind for record in records(tmp_path, conversation_id)):
        assert time.monotonic() < deadline, f"no {kind} record"
        await asyncio.sleep(0.05)


async def test_kill_9_mid_stream_finishes_a_groups_preview_by_an_edit_and_sends_a_private_answer_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    slow_then_quick(llm, slow=2)
    process = process_with_fast_previews(tg, llm, tmp_path)
    process.start()
    try:
        tg.add_text_message(GROUP, "@test_assistant_bot crash test", chat_type="supergroup")
        tg.add_text_message(42, "crash test")
        [preview] = await tg.await_sent(chat_id=GROUP, timeout=30)
        await until_recorded(tmp_path, str(GROUP), "preview")
        await tg.await_drafts(42, count=2, timeout=30)
        process.kill9()
        assert AFTER not in str(tg.chat_view(GROUP))
        assert tg.sent_to(42) == []

        process.start()
        final = to_telegram_html(AFTER)
        await tg._await(lambda: final in [m.text for m in tg._state.edits], 30, "the answer as an edit")
        [answer] = await tg.await_sent(chat_id=42, timeout=30)
        assert tg.chat_view(GROUP) == [final]
        assert [m.message_id for m in tg.sent_to(GROUP)] == [preview.message_id]  # no second message
        assert answer.text == AFTER
        tg.add_text_message(42, "and after?")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=20)
        assert [m.text for m in sent] == [AFTER, "echo: and after?"]
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    group = records(tmp_path, str(GROUP))
    assert [r.get("role") for r in group].count("user") == 1
    assert [r.get("type") for r in group].count("delivered") == 1
    assert [r.get("type") for r in records(tmp_path, "42")].count("delivered") == 2
