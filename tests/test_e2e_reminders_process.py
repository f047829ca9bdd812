"""Reminders across `kill -9` of `python main.py` as a real process (file backend): none lost, none
doubled outside the window between Telegram accepting a message and the store recording it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conf.settings import StoreSettings
from llm.context import REMINDER_TASK
from stores import FileConversationStore, NewReminder, ReplyTarget, build_feature_stores
from tests.e2e_support import AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeLLMRequest, FakeLLMServer, Hang
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.slow


async def seed(store_dir: Path, *reminders: NewReminder) -> None:
    """Reminders an earlier run made, in the store the process will use."""
    async with build_feature_stores(StoreSettings(backend="file", dir=str(store_dir))) as features:
        for reminder in reminders:
            await features.reminders.create(reminder)


async def unconfirmed(store_dir: Path) -> int:
    async with build_feature_stores(StoreSettings(backend="file", dir=str(store_dir))) as features:
        return len(await features.reminders.unconfirmed())


async def records_of(store_dir: Path, conversation_id: str) -> list[dict[str, object]]:
    async with FileConversationStore(store_dir) as store:
        return await store.load(conversation_id)


async def test_kill_9_while_a_task_reminder_runs_then_restart_sends_its_result_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    now = datetime.now(UTC)
    await seed(store_dir, NewReminder("42", ReplyTarget(42), 7, "summarise the news", now, "UTC", run=True))
    hang_first = [True]

    def handler(request: FakeLLMRequest) -> Hang | None:
        if request.last_user_text.endswith("summarise the news") and hang_first[0]:
            hang_first[0] = False
            return Hang()
        return None

    llm.script(handler)
    process = AssistantProcess(assistant_env(tg, llm, store_dir), tmp_path / "assistant.log")
    process.start()
    try:
        await llm.await_requests(1, timeout=30)  # the task's turn is under way: claimed and recorded
        process.kill9()
        assert tg.sent_to(42) == []
        process.start()
        [answer] = await tg.await_sent(chat_id=42, timeout=30)
        assert answer.visible_text == "echo: " + REMINDER_TASK.format(text="summarise the news")
        assert process.terminate() == 0, process.log_text()[-2000:]
    finally:
        process.ensure_dead()
    records = await records_of(store_dir, "42")
    assert [record.get("type") for record in records if record.get("type")] == ["reminder_fired", "delivered"]
    assert await unconfirmed(store_dir) == 0
    assert len(tg.sent_to(42)) == 1


async def test_kill_9_while_reminders_are_being_sent_loses_none_and_repeats_only_those_in_flight(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    now = datetime.now(UTC)
    chats = list(range(1001, 1021))
    await seed(store_dir, *(NewReminder(str(chat), ReplyTarget(chat), 7, f"for {chat}", now, "UTC") for chat in chats))
    tg.send_latency = 1.0  # sends are in flight when the process dies
    process = AssistantProcess(assistant_env(tg, llm, store_dir), tmp_path / "assistant.log")
    process.start()
    try:
        await tg.await_calls("sendMessage", count=1, timeout=30)
        process.kill9()
        in_flight = tg.calls.count("sendMessage")  # Telegram has these; the store may not have recorded them
        tg.send_latency = 0.0
        process.start()
        await until_each_chat_has_one(tg, chats)
        assert process.terminate() == 0, process.log_text()[-2000:]
    finally:
        process.ensure_dead()
    counts = {chat: [message.text for message in tg.sent_to(chat)] for chat in chats}
    assert all(texts and set(texts) == {f"for {chat}"} for chat, texts in counts.items())  # none lost
    doubled = [chat for chat, texts in counts.items() if len(texts) > 1]
    assert all(len(texts) <= 2 for texts in counts.values())
    assert len(doubled) <= in_flight  # only those Telegram had when the process died
    assert await unconfirmed(store_dir) == 0  # nothing is left for a next start to send
    for chat in chats:
        kinds = [record.get("type") for record in await records_of(store_dir, str(chat))]
        assert kinds == ["reminder_fired", "delivered"]  # each firing recorded once


async def until_each_chat_has_one(tg: FakeTelegramServer, chats: list[int]) -> None:
    async with asyncio.timeout(30):
        while not all(tg.sent_to(chat) for chat in chats):
            await tg.await_sent(count=len(tg.sent) + 1, timeout=30)
