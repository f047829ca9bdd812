"""End to end: streamed answers and /stop, the built system against the fake Bot API and fake model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from actors import texts
from app.system import AssistantSystem
from channels.telegram import split_message, to_telegram_html
from conf import Settings
from tests.e2e_support import assistant_env, fast_settings, running
from tests.fakes.llm_server import CallTools, Fail, FakeLLMServer, Reply
from tests.fakes.telegram_server import FakeTelegramServer
from tests.mcp_helpers import stdio_settings

GROUP = -100_500
MENTION = "@test_assistant_bot "
ANSWER = " ".join(f"Sentence {index} of a streamed answer, written word by word." for index in range(8))


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> dict[str, str]:
    return assistant_env(tg, llm, tmp_path / "store")


def streaming(env: dict[str, str], **telegram: Any) -> Settings:
    """The shipped settings, with previews paced for a test (milliseconds, not seconds)."""
    settings = fast_settings(env)
    paced = {"draft_interval_seconds": 0.05, "edit_interval_seconds": 0.15, **telegram}
    return settings.model_copy(update={"telegram": settings.telegram.model_copy(update=paced)})


def store_records(tmp_path: Path, conversation_id: str) -> list[dict[str, Any]]:
    path = next((tmp_path / "store").glob(f"*{conversation_id.lstrip('-')}*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def mcp_ready(system: AssistantSystem) -> None:
    await system.mcp_actors["fake"].connection.wait_until(lambda connection: connection.connected)


async def warm_up(tg: FakeTelegramServer, llm: FakeLLMServer) -> None:
    """One exchange first: the model's SDK loads on the first turn, and would hold up its stream."""
    llm.script([])
    tg.add_text_message(1, "warm up")
    await tg.await_sent(chat_id=1, timeout=20)


async def test_a_private_chat_sees_drafts_then_the_answer_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(streaming(env)):
        await warm_up(tg, llm)
        llm.script(Reply(ANSWER, first_token_delay=0.05, chars_per_second=500))
        tg.add_text_message(42, "tell me something")
        [message] = await tg.await_sent(chat_id=42, timeout=15)
    drafts = tg.drafts(42)
    assert message.text == ANSWER
    assert len(drafts) >= 2
    assert all(draft.time < message.time for draft in drafts)
    assert all(ANSWER.startswith(draft.visible_text) for draft in drafts)
    assert llm.requests[-1].stream


async def test_a_group_sees_one_message_edited_into_the_answer(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str], tmp_path: Path
) -> None:
    async with running(streaming(env)):
        await warm_up(tg, llm)
        llm.script(Reply(ANSWER, first_token_delay=0.05, chars_per_second=500))
        tg.add_text_message(GROUP, MENTION + "tell us something", chat_type="supergroup")
        await tg.await_edits(chat_id=GROUP, count=2, timeout=15)
        final = to_telegram_html(ANSWER)
        await tg._await(lambda: final in [m.text for m in tg._state.edits], 15, "the final edit")
    [message] = tg.sent_to(GROUP)
    assert tg.chat_view(GROUP) == [final]
    assert message.reply_to is not None  # the first message quotes the question, as whole answers do
    records = store_records(tmp_path, str(GROUP))
    assert [r["message_ids"] for r in records if r.get("type") == "preview"] == [[message.message_id]]
    assert [r.get("type") for r in records][-1] == "delivered"


async def test_text_before_a_tool_call_is_shown_and_the_stream_goes_on_after_it(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(streaming(env), {"fake": stdio_settings()}) as system:
        await mcp_ready(system)
        await warm_up(tg, llm)
        llm.script(
            [
                CallTools([("fake__slow", {"seconds": 0.6})], text="Let me wait a moment."),
                Reply("Waited. Here is the answer.", first_token_delay=0.05, chars_per_second=200),
            ]
        )
        tg.add_text_message(42, "wait for it")
        [message] = await tg.await_sent(chat_id=42, timeout=20)
    drafts = tg.drafts(42)
    assert drafts[0].visible_text == "Let me wait a moment."
    second = llm.requests[-1].received_at
    assert drafts[0].time < second  # shown while the tool ran
    assert any(d.visible_text.startswith("Let me wait a moment.\n\nWaited.") for d in drafts)
    assert message.text == "Waited. Here is the answer."


async def test_a_failure_after_some_text_replaces_the_groups_preview_with_the_notice(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(streaming(env), {"fake": stdio_settings()}) as system:
        await mcp_ready(system)
        await warm_up(tg, llm)
        llm.script([CallTools([("fake__slow", {"seconds": 0.5})], text="Checking the records now."), Fail(400)])
        tg.add_text_message(GROUP, MENTION + "check", chat_type="supergroup")
        [preview] = await tg.await_sent(chat_id=GROUP, timeout=20)
        notice = to_telegram_html(texts.MODEL_REJECTED)
        await tg._await(lambda: notice in [m.text for m in tg._state.edits], 15, "the notice")
    assert preview.text == "Checking the records now."
    assert tg.chat_view(GROUP) == [notice]


async def test_stop_mid_answer_sends_what_was_written_marked_and_the_chat_goes_on(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    long_answer = " ".join(f"word{index}" for index in range(2000))
    async with running(streaming(env)):
        await warm_up(tg, llm)
        llm.script([Reply(long_answer, first_token_delay=0.05, chars_per_second=300)])
        tg.add_text_message(42, "write a lot")
        await tg.await_drafts(42, count=2, timeout=15)
        tg.add_text_message(42, "/stop")
        [stopped] = await tg.await_sent(chat_id=42, timeout=5)
        assert stopped.visible_text.endswith(f"\n\n{texts.STOPPED}")
        written = stopped.visible_text.removesuffix(f"\n\n{texts.STOPPED}")
        assert long_answer.startswith(written)
        assert 0 < len(written) < len(long_answer) // 2

        tg.add_text_message(42, "thanks")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=10)
        assert sent[1].text == "echo: thanks"
        seen = [m["content"] for m in llm.requests[-1].messages if m["role"] == "assistant"]
        assert seen == [stopped.visible_text]

        tg.add_text_message(42, "/stop")
        sent = await tg.await_sent(chat_id=42, count=3, timeout=10)
        assert sent[2].visible_text == texts.NOTHING_TO_STOP
    assert len(llm.requests) == 3


async def test_stop_mid_tool_call_ends_the_turn_at_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(streaming(env), {"fake": stdio_settings(timeout=60)}) as system:
        await mcp_ready(system)
        await warm_up(tg, llm)
        llm.script([CallTools([("fake__slow", {"seconds": 30})], text="This will take a while.")])
        tg.add_text_message(42, "do the slow thing")
        await tg.await_drafts(42, timeout=15)
        tg.add_text_message(42, "/stop")
        [stopped] = await tg.await_sent(chat_id=42, timeout=5)
    assert stopped.visible_text == f"This will take a while.\n\n{texts.STOPPED}"
    assert len(llm.requests) == 2


async def test_with_streaming_off_answers_come_whole(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    env = assistant_env(tg, llm, tmp_path / "store", STREAM_REPLIES="off")
    llm.script([Reply(ANSWER, first_token_delay=0.05, chars_per_second=2000)] * 2)
    async with running(streaming(env)) as system:
        assert system.settings.telegram.stream_replies is False
        tg.add_text_message(42, "tell me something")
        tg.add_text_message(GROUP, MENTION + "and us", chat_type="supergroup")
        await tg.await_sent(count=2, timeout=15)
    assert tg.drafts() == []
    assert tg.edits == []
    assert [m.text for m in tg.sent_to(42)] == split_message(to_telegram_html(ANSWER))
