"""The reminder tools as the model calls them: through a turn's toolbox, on the turn's chat and user."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from llm import EmptyToolbox, ReplyTarget, ToolResult
from stores import InMemoryReminderStore, ReminderState
from stores import ReplyTarget as StoredTarget
from tools import ToolContext, Toolkit
from tools.builtin import TurnToolbox
from tools.builtin_reminders import ReminderTools, format_local, reminder_lines

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)  # Friday 08:00 in Berlin


class Setup:
    def __init__(self, limit: int = 100) -> None:
        self.store = InMemoryReminderStore(clock=lambda: NOW, max_active_per_conversation=limit)
        self.woken: list[datetime] = []
        self.toolkit = Toolkit(EmptyToolbox(), ReminderTools(self.store, self.woken.append).tools)

    def turn(self, conversation_id: str = "-100:7", user_id: int | None = 111) -> TurnToolbox:
        target = ReplyTarget(-100, message_thread_id=7, reply_to_message_id=55)
        return self.toolkit.for_turn(ToolContext(user_id, conversation_id, target, BERLIN, NOW, update_id=9))


async def call(toolbox: TurnToolbox, name: str, **arguments: Any) -> ToolResult:
    return await toolbox.call(name, arguments)


def data(result: ToolResult) -> Any:
    assert not result.is_error, result.content
    return json.loads(result.content)


async def test_a_reminder_is_made_in_the_turns_chat_for_its_user_in_their_zone() -> None:
    setup = Setup()
    result = data(await call(setup.turn(), "create_reminder", text=" call the bank ", at="2026-05-01T09:00"))
    assert result["next"] == "2026-05-01T09:00:00+02:00"
    assert result["next_in_words"] == "Fri 1 May 2026, 09:00 (Europe/Berlin)"
    assert (result["repeat"], result["run"]) == ("once", False)
    [stored] = await setup.store.list_for_conversation("-100:7")
    assert stored.id == result["reminder_id"]
    assert (stored.text, stored.user_id, stored.timezone, stored.repeat) == (
        "call the bank",
        111,
        "Europe/Berlin",
        None,
    )
    assert stored.target == StoredTarget(-100, 7)  # the topic, not the message it answered
    assert stored.next_due == datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    assert setup.woken == [stored.next_due]  # the scheduler heard of it before the tool answered


async def test_repeat_rules_are_stored_with_their_wall_time_and_read_back_in_words() -> None:
    setup = Setup()
    toolbox = setup.turn()
    daily = data(await call(toolbox, "create_reminder", text="stretch", at="2026-05-01T09:30", repeat="daily"))
    assert daily["repeat"] == "every day at 09:30"
    # Weekdays asked for on a Saturday start on Monday.
    weekdays = data(await call(toolbox, "create_reminder", text="standup", at="2026-05-02T10:00", repeat="weekdays"))
    assert weekdays["next"] == "2026-05-04T10:00:00+02:00"
    cron = data(
        await call(toolbox, "create_reminder", text="news", at="2026-05-01T09:00", repeat="0 18 * * 5", run=True)
    )
    assert (cron["next"], cron["run"]) == ("2026-05-01T18:00:00+02:00", True)
    stored = {item.text: item for item in await setup.store.list_for_conversation("-100:7")}
    assert stored["stretch"].repeat == "daily 09:30"
    assert stored["standup"].repeat == "weekdays 10:00"
    assert (stored["news"].repeat, stored["news"].run) == ("cron 0 18 * * 5", True)


async def test_an_offset_or_zone_in_at_overrides_the_users_zone() -> None:
    setup = Setup()
    toolbox = setup.turn()
    offset = data(await call(toolbox, "create_reminder", text="a", at="2026-05-01T09:00+00:00"))
    named = data(await call(toolbox, "create_reminder", text="b", at="2026-05-01T09:00 America/New_York"))
    assert offset["next"] == "2026-05-01T11:00:00+02:00"  # shown in the user's zone
    assert named["next"] == "2026-05-01T15:00:00+02:00"


async def test_times_in_the_past_unknown_zones_and_bad_rules_are_errors_the_model_can_fix() -> None:
    setup = Setup()
    toolbox = setup.turn()
    past = await call(toolbox, "create_reminder", text="x", at="2026-05-01T07:59")
    assert past.is_error
    assert "is in the past" in past.content
    assert "it is now Fri 1 May 2026, 08:00 (Europe/Berlin)" in past.content
    zone = await call(toolbox, "create_reminder", text="x", at="2026-05-01T09:00 Mars/Olympus")
    assert zone.is_error
    assert "Unknown time zone 'Mars/Olympus'" in zone.content
    rule = await call(toolbox, "create_reminder", text="x", at="2026-05-01T09:00", repeat="fortnightly")
    assert rule.is_error
    assert "five-field cron expression" in rule.content
    unreadable = await call(toolbox, "create_reminder", text="x", at="next tuesday")
    assert unreadable.is_error
    assert "ISO 8601" in unreadable.content
    not_bool = await call(toolbox, "create_reminder", text="x", at="2026-05-01T09:00", run="yes")
    assert not_bool.is_error
    assert "true or false" in not_bool.content
    missing = await call(toolbox, "create_reminder", at="2026-05-01T09:00")
    assert missing.is_error
    assert "'text' is missing" in missing.content
    assert await setup.store.list_for_conversation("-100:7") == []
    assert setup.woken == []


async def test_the_limit_per_chat_is_a_clear_error() -> None:
    setup = Setup(limit=2)
    toolbox = setup.turn()
    for index in range(2):
        data(await call(toolbox, "create_reminder", text=f"r{index}", at="2026-05-02T09:00"))
    refused = await call(toolbox, "create_reminder", text="one more", at="2026-05-02T09:00")
    assert refused.is_error
    assert "already has 2 reminders" in refused.content
    data(await call(setup.turn("other chat"), "create_reminder", text="elsewhere", at="2026-05-02T09:00"))


async def test_a_chat_lists_and_cancels_only_its_own_reminders() -> None:
    setup = Setup()
    mine = data(await call(setup.turn(), "create_reminder", text="mine", at="2026-05-02T09:00"))
    theirs = data(await call(setup.turn("555", user_id=222), "create_reminder", text="theirs", at="2026-05-02T09:00"))
    listed = data(await call(setup.turn(), "list_reminders"))["reminders"]
    assert [item["text"] for item in listed] == ["mine"]
    refused = await call(setup.turn(), "cancel_reminder", reminder_id=theirs["reminder_id"])
    assert refused.is_error
    assert "no reminder with the id" in refused.content
    assert data(await call(setup.turn(), "cancel_reminder", reminder_id=mine["reminder_id"].upper())) == {
        "cancelled": mine["reminder_id"]
    }
    assert data(await call(setup.turn(), "list_reminders")) == {"reminders": []}
    [left] = await setup.store.list_for_conversation("555")
    assert left.state is ReminderState.ACTIVE


async def test_a_turn_without_a_user_still_makes_reminders_for_its_chat() -> None:
    setup = Setup()
    made = data(await call(setup.turn("console", user_id=None), "create_reminder", text="x", at="2026-05-02T09:00"))
    stored = await setup.store.get("console", made["reminder_id"])
    assert stored is not None
    assert stored.user_id == 0


async def test_reminders_are_listed_for_people_in_their_zone() -> None:
    setup = Setup()
    toolbox = setup.turn()
    data(await call(toolbox, "create_reminder", text="call the bank", at="2026-05-01T09:00"))
    data(await call(toolbox, "create_reminder", text="news", at="2026-05-01T18:00", repeat="daily", run=True))
    reminders = await setup.store.list_for_conversation("-100:7")
    await setup.store.pause("-100:7", reminders[1].id)
    lines = reminder_lines(await setup.store.list_for_conversation("-100:7"), BERLIN)
    assert lines[0] == f"• `{reminders[0].id}` Fri 1 May 2026, 09:00 (Europe/Berlin): call the bank"
    assert lines[1] == (
        f"• `{reminders[1].id}` every day at 18:00, next Fri 1 May 2026, 18:00 (Europe/Berlin)"
        " (paused: this chat could not be reached): task: news"
    )
    assert format_local(NOW + timedelta(seconds=5), ZoneInfo("UTC")) == "Fri 1 May 2026, 06:00:05 (UTC)"
