"""Reminders end to end: the built system against the fake Bot API and the fake model, on the file
and DynamoDB backends, with restarts. (kill -9 of a real process: tests/test_e2e_reminders_process.py.)"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conf import Settings
from stores import NewReminder, Reminder, ReminderState, ReminderStore, ReplyTarget, build_feature_stores
from tests.e2e_support import assistant_env, dynamodb_variables, fast_settings, running
from tests.fakes.llm_server import CallTools, FakeLLMRequest, FakeLLMServer, ResponseSpec
from tests.fakes.moto_server import fake_aws_credentials
from tests.fakes.telegram_server import FakeTelegramServer


@pytest.fixture(params=["file", "dynamodb"])
def settings(request: pytest.FixtureRequest, tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> Settings:
    extra: dict[str, str] = {"TIMEZONE": "Europe/Berlin"}
    if request.param == "dynamodb":
        fake_aws_credentials(request.getfixturevalue("monkeypatch"))
        extra |= dynamodb_variables(request.getfixturevalue("moto_endpoint"), f"e2e-{tmp_path.name[-20:]}")
    return fast_settings(assistant_env(tg, llm, tmp_path / "store", **extra))


def script_reminder(llm: FakeLLMServer, asked: str, text: str, zone: ZoneInfo, seconds: float) -> list[float]:
    """When asked `asked`, the model calls create_reminder once for `seconds` from then (in `zone`'s
    wall time), then answers with what the tool said. Returns where the due time (monotonic) goes."""
    due_at: list[float] = []

    def handler(request: FakeLLMRequest) -> ResponseSpec | None:
        if request.last_user_text == asked and not request.tool_results:
            due = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
            due_at.append(time.monotonic() + (due - datetime.now(UTC)).total_seconds())
            local = due.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
            return CallTools([("create_reminder", {"text": text, "at": local})])
        return None

    llm.script(handler)
    return due_at


async def test_a_reminder_made_in_a_conversation_arrives_in_its_chat_within_two_seconds(
    tg: FakeTelegramServer, llm: FakeLLMServer, settings: Settings
) -> None:
    asked = "remind me to call the bank"
    due_at = script_reminder(llm, asked, "call the bank", settings_zone(settings), 2)
    async with running(settings):
        tg.add_text_message(42, asked)
        confirmation, reminder = await tg.await_sent(chat_id=42, count=2, timeout=15)
        assert confirmation.text.startswith("tool said: ")
        assert '"reminder_id"' in confirmation.text
        assert reminder.text == "call the bank"
        assert 0 <= reminder.time - due_at[0] < 2.0
        tg.add_text_message(42, "/reminders")
        [*_, listed] = await tg.await_sent(chat_id=42, count=3, timeout=10)
        assert listed.text.startswith("No reminders in this chat.")  # a one-off is done once sent
    # Only the user's message went to the model: the reminder itself never did.
    assert len(llm.requests) == 2


def settings_zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


async def until_paused(store: ReminderStore, conversation_id: str) -> Reminder:
    """The chat's one reminder, once the scheduler (in the same process, but no event of ours to
    wait on) has paused it."""
    async with asyncio.timeout(10):
        while True:
            [listed] = await store.list_for_conversation(conversation_id)
            if listed.state is ReminderState.PAUSED:
                return listed
            await asyncio.sleep(0.02)


async def test_a_reminder_due_while_stopped_is_sent_once_at_start_saying_it_is_late(
    tg: FakeTelegramServer, settings: Settings
) -> None:
    due = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    features = build_feature_stores(settings.store)
    async with features:  # made by an earlier run, which stopped before it fell due
        made = await features.reminders.create(
            NewReminder("42", ReplyTarget(42), 7, "call the bank", due, "Europe/Berlin")
        )
    async with running(settings):
        [late] = await tg.await_sent(chat_id=42, timeout=15)
    local = due.astimezone(settings_zone(settings))
    assert late.text.startswith("call the bank\n\n(Late: this was due ")
    assert f"{local:%H:%M} (Europe/Berlin), while I was not running.)" in late.text
    async with running(settings):  # a second restart sends nothing more
        tg.add_text_message(42, "/reminders")
        [*_, listed] = await tg.await_sent(chat_id=42, count=2, timeout=15)
    assert listed.text.startswith("No reminders in this chat.")
    assert [message.text for message in tg.sent_to(42)].count(late.text) == 1
    async with features:
        stored = await features.reminders.get("42", made.id)
        assert stored is None or (stored.state, stored.unconfirmed_firing) == (ReminderState.DONE, None)
        assert await features.reminders.unconfirmed() == []


async def test_a_chat_that_blocked_the_bot_gets_its_reminders_again_after_start(
    tg: FakeTelegramServer, llm: FakeLLMServer, settings: Settings
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    features = build_feature_stores(settings.store)
    async with features:
        await features.reminders.create(NewReminder("42", ReplyTarget(42), 7, "blocked", now, "UTC"))
        daily = await features.reminders.create(
            NewReminder("42", ReplyTarget(42), 7, "daily", now + timedelta(hours=1), "UTC", repeat="daily 00:00")
        )
    tg.block_chat(42)
    async with running(settings):
        await tg.await_calls("sendMessage", count=1, timeout=15)  # refused: 403
        async with features:
            listed = await until_paused(features.reminders, "42")
        assert listed.id == daily.id
        tg.block_chat(42, blocked=False)
        tg.add_text_message(42, "/reminders")
        [listing] = await tg.await_sent(chat_id=42, timeout=15)
        assert "(paused: this chat could not be reached)" in listing.text
        tg.add_text_message(42, "/start")
        await tg.await_sent(chat_id=42, count=2, timeout=15)
    async with features:
        [resumed] = await features.reminders.list_for_conversation("42")
        assert resumed.state is ReminderState.ACTIVE
    assert llm.requests == []
