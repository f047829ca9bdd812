"""The scheduler and the conversation actors together, on a fake clock: reminders fire on time, in
their chat, once; across days, DST, stops and crashes (days of reminders in milliseconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llm import LLMUnavailable
from llm.context import REMINDER_TASK
from stores import ReminderState, firing_id
from tests.fakes.clock import FakeWallClock
from tests.reminder_world import BERLIN, START, ReminderWorld, firing_records


def local(moment: datetime) -> str:
    return moment.astimezone(BERLIN).strftime("%a %d %H:%M")


async def test_a_reminder_fires_at_its_time_in_its_chat_as_written() -> None:
    world = ReminderWorld()
    world.start()
    made = await world.create("call the bank", "2026-05-01T09:00")
    due = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    await world.settle()
    world.clock.set(due - timedelta(seconds=1))
    await world.settle()
    assert world.channel.sent == []
    world.clock.set(due)
    [sent] = await world.channel.until_sent(1)
    assert (sent.chat_id, sent.text, sent.at) == (42, "call the bank", due)
    await world.settle()
    records = await world.records()
    fired = firing_id(made["reminder_id"], due)
    assert [(r["type"], r["firing_id"]) for r in records] == [("reminder_fired", fired), ("delivered", fired)]
    stored = await world.reminders.get("42", made["reminder_id"])
    assert stored is not None
    assert (stored.state, stored.unconfirmed_firing) == (ReminderState.DONE, None)
    assert world.model.requests == []  # a plain reminder never calls the model
    await world.stop()


async def test_one_timer_sleeps_until_the_earliest_due_time_and_a_sooner_reminder_re_arms_it() -> None:
    world = ReminderWorld()
    world.start()
    await world.settle()
    assert world.clock.sleepers == [START + timedelta(minutes=1)]  # nothing due: it looks again in a minute
    await world.create("later", "2026-05-01T08:00:50")
    later = START + timedelta(seconds=50)
    await world.settle(later)
    await world.create("sooner", "2026-05-01T08:00:20")
    sooner = START + timedelta(seconds=20)
    await world.settle(sooner)
    assert world.clock.sleepers == [sooner]  # one timer, not one per reminder
    world.clock.set(sooner)
    await world.channel.until_sent(1)
    await world.settle(later)
    world.clock.set(later)
    await world.channel.until_sent(2)
    assert world.channel.texts() == ["sooner", "later"]
    assert [item.at for item in world.channel.sent] == [sooner, later]
    await world.stop()


async def test_a_daily_reminder_stays_at_nine_across_the_dst_change() -> None:
    world = ReminderWorld(clock=FakeWallClock(datetime(2026, 3, 26, 12, 0, tzinfo=UTC)))
    world.start()
    await world.create("vitamins", "2026-03-27T09:00", repeat="daily")
    for day in range(4):
        await world.settle()
        world.clock.set(datetime(2026, 3, 27, 7, 0, tzinfo=UTC) + timedelta(days=day))  # 09:00 in summer ...
        await world.settle()
        world.clock.advance(hours=1)  # ... and 09:00 in winter: it fires at one of them
        await world.channel.until_sent(day + 1)
    assert [local(item.at) for item in world.channel.sent] == [
        "Fri 27 09:00",
        "Sat 28 09:00",
        "Sun 29 09:00",  # the first day of summer time
        "Mon 30 09:00",
    ]
    assert world.channel.texts() == ["vitamins"] * 4
    await world.stop()


async def test_a_cancelled_reminder_never_fires() -> None:
    world = ReminderWorld()
    world.start()
    made = await world.create("never", "2026-05-01T09:00")
    assert await world.reminders.cancel("42", made["reminder_id"])
    world.clock.advance(days=2)
    await world.settle()
    assert world.channel.sent == []
    await world.stop()


async def test_a_run_reminder_runs_a_turn_on_the_task_and_sends_the_result() -> None:
    world = ReminderWorld()
    world.start()
    await world.create("summarise the news", "2026-05-01T09:00", run=True)
    world.clock.advance(hours=1)
    [sent] = await world.channel.until_sent(1)
    assert sent.text == "answer to: summarise the news"
    [request] = world.model.requests
    assert (request[-1]["role"], request[-1]["content"]) == ("user", REMINDER_TASK.format(text="summarise the news"))
    await world.settle()
    records = await world.records()
    assert [record.get("type") or record["role"] for record in records] == ["reminder_fired", "assistant", "delivered"]
    assert len({record["firing_id"] for record in records}) == 1
    await world.stop()


async def test_a_run_reminder_whose_model_fails_sends_a_short_note_instead_of_silence() -> None:
    world = ReminderWorld()
    world.model.fail = LLMUnavailable("down", status=503)
    world.start()
    await world.create("summarise the news", "2026-05-01T09:00", run=True)
    world.clock.advance(hours=1)
    [sent] = await world.channel.until_sent(1)
    assert "unavailable" in sent.text
    await world.stop()


async def test_a_plain_reminder_is_shown_to_the_model_as_said_never_as_the_users_words() -> None:
    from actors.protocol import ReplyTarget, UserMessage

    world = ReminderWorld()
    world.start()
    await world.create("call the bank", "2026-05-01T09:00")
    world.clock.advance(hours=1)
    await world.channel.until_sent(1)
    assert world.registry is not None
    await world.registry.ask("42", UserMessage("42", "what did you remind me of?", ReplyTarget(42), 1001, 7))
    [request] = world.model.requests
    assert [message["role"] for message in request] == ["user"]  # nothing before a user message is sent
    await world.registry.ask("42", UserMessage("42", "and now?", ReplyTarget(42), 1002, 7))
    roles = [(message["role"], message["content"][:30]) for message in world.model.requests[-1]]
    assert roles == [
        ("user", "what did you remind me of?"),
        ("assistant", "answer to: what did you remind"),
        ("user", "and now?"),
    ]
    await world.stop()


async def test_a_one_off_missed_while_stopped_is_sent_once_at_start_saying_when_it_was_due() -> None:
    world = ReminderWorld()
    world.start()
    await world.create("call the bank", "2026-05-01T09:00")
    await world.stop()
    world.clock.advance(hours=5)  # stopped all morning
    world.start()
    [sent] = await world.channel.until_sent(1)
    assert sent.text == (
        "call the bank\n\n(Late: this was due Fri 1 May 2026, 09:00 (Europe/Berlin), while I was not running.)"
    )
    await world.settle()
    await world.stop()
    world.start()
    await world.settle()
    assert len(world.channel.sent) == 1
    await world.stop()


async def test_a_missed_repeating_reminder_sends_one_late_notice_then_keeps_its_schedule() -> None:
    world = ReminderWorld()
    world.start()
    made = await world.create("stand-up", "2026-05-01T09:00", repeat="daily")
    await world.stop()
    world.clock.set(datetime(2026, 5, 4, 8, 0, tzinfo=UTC))  # Monday 10:00: missed Fri, Sat, Sun, Mon
    world.start()
    [late] = await world.channel.until_sent(1)
    assert late.text.startswith("stand-up\n\n(Late: this was due Fri 1 May 2026, 09:00 (Europe/Berlin)")
    assert "came due 3 more time(s) since" in late.text
    await world.settle()
    stored = await world.reminders.get("42", made["reminder_id"])
    assert stored is not None
    assert local(stored.next_due) == "Tue 05 09:00"
    world.clock.set(stored.next_due)
    on_time = await world.channel.until_sent(2)
    assert on_time[1].text == "stand-up"
    await world.stop()


async def test_a_firing_lost_in_a_crash_before_telegram_took_it_is_sent_once_at_restart() -> None:
    world = ReminderWorld()
    world.start()
    made = await world.create("call the bank", "2026-05-01T09:00")
    world.channel.hang = ("call the bank", "before")
    world.clock.advance(hours=1)
    await world.channel.hanging.wait()  # claimed, told, being sent: then the process dies
    await world.crash()
    stored = await world.reminders.get("42", made["reminder_id"])
    assert stored is not None
    assert stored.state is ReminderState.DONE  # claimed: the scheduler alone would never fire it again
    world.start()
    [sent] = await world.channel.until_sent(1)
    assert sent.text == "call the bank"  # on time still: no late note
    await world.settle()
    assert await world.reminders.unconfirmed() == []
    await world.stop()


async def test_a_crash_after_telegram_took_it_sends_it_at_most_once_more() -> None:
    world = ReminderWorld()
    world.start()
    await world.create("call the bank", "2026-05-01T09:00")
    world.channel.hang = ("call the bank", "after")
    world.clock.advance(hours=1)
    await world.channel.hanging.wait()  # Telegram accepted it; the store has not recorded it
    await world.crash()
    world.start()
    await world.channel.until_sent(2)
    await world.settle()
    await world.crash()
    world.start()
    await world.settle()
    assert world.channel.texts() == ["call the bank", "call the bank"]  # the one allowed repeat, no more
    await world.stop()


async def test_a_firing_recorded_but_not_confirmed_before_a_crash_is_not_sent_again() -> None:
    world = ReminderWorld()
    world.start()
    made = await world.create("call the bank", "2026-05-01T09:00")
    await world.stop()
    due = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    world.clock.set(due)
    # As if a process claimed the firing and delivered it, then died before confirming it.
    assert await world.reminders.advance("42", made["reminder_id"], due, None)
    fired = firing_id(made["reminder_id"], due)
    await world.conversations.append(
        "42",
        [
            {"type": "reminder_fired", "text": "call the bank", "chat_id": 42, "firing_id": fired, "seq": 0},
            {"type": "delivered", "firing_id": fired, "seq": 1},
        ],
    )
    world.start()
    await world.settle()
    assert world.channel.sent == []
    assert await world.reminders.unconfirmed() == []
    assert [told.firing_id for told in world.told] == [fired]
    await world.stop()


async def test_a_chat_that_blocked_the_bot_has_its_reminders_paused_until_start() -> None:
    from actors.protocol import Command, ReplyTarget

    world = ReminderWorld()
    world.start()
    await world.create("first", "2026-05-01T09:00")
    daily = await world.create("daily", "2026-05-01T10:00", repeat="daily")
    await world.create("elsewhere", "2026-05-01T09:00", chat=555)
    world.channel.blocked.add(42)
    world.clock.advance(hours=1)
    await world.channel.until_sent(1)  # the other chat still gets its own
    await world.settle()
    assert world.channel.texts() == ["elsewhere"]
    [paused] = await world.reminders.list_for_conversation("42")
    assert (paused.id, paused.state) == (daily["reminder_id"], ReminderState.PAUSED)
    world.clock.advance(days=3)
    await world.settle()
    assert world.channel.texts() == ["elsewhere"]  # not retried, not fired again
    records = await world.records()
    assert firing_records(records, "delivered")[0].get("dead_letter") is True
    # The user unblocks the bot; Telegram's Restart button sends /start.
    world.channel.blocked.clear()
    assert world.registry is not None
    await world.registry.ask("42", Command("42", "start", ReplyTarget(42), 2001, 7))
    sent = await world.channel.until_sent(3)
    assert sent[2].text.startswith("daily\n\n(Late: this was due Fri 1 May 2026, 10:00 (Europe/Berlin)")
    await world.settle()
    [resumed] = await world.reminders.list_for_conversation("42")
    assert resumed.state is ReminderState.ACTIVE
    assert local(resumed.next_due) == "Mon 04 10:00"  # it is Monday 09:00 now
    await world.stop()


async def test_reminders_command_lists_the_chats_reminders_in_the_users_zone() -> None:
    from actors.protocol import Command, ReplyTarget

    world = ReminderWorld()
    world.start()
    assert world.registry is not None
    empty = await world.registry.ask("42", Command("42", "reminders", ReplyTarget(42), 3001, 7))
    assert empty.startswith("No reminders in this chat.")
    made = await world.create("call the bank", "2026-05-01T09:00")
    await world.create("elsewhere", "2026-05-01T09:00", chat=555)
    await world.preferences.set_timezone(7, "America/New_York")
    listed = await world.registry.ask("42", Command("42", "reminders", ReplyTarget(42), 3002, 7))
    assert (
        listed
        == f"Reminders in this chat:\n• `{made['reminder_id']}` Fri 1 May 2026, 03:00 (America/New_York): call the bank"
    )
    await world.stop()


async def test_two_schedulers_on_one_store_fire_each_firing_once() -> None:
    first = ReminderWorld()
    second = ReminderWorld(reminders=first.reminders, conversations=first.conversations, clock=first.clock)
    second.channel = first.channel
    first.start()
    second.start()
    for index in range(10):
        await first.create(f"r{index}", "2026-05-01T09:00", chat=100 + index)
    # Both are running before the reminders fall due for both at once: the claims race. (A scheduler
    # that starts hands every unconfirmed firing to its chat again, so one starting while another
    # has firings in flight could repeat them: the scheduler's docstring says so.)
    await first.settle()
    await second.settle()
    first.clock.advance(hours=1)
    second.scheduler.wake()  # type: ignore[union-attr]  # the second worker looks at once too
    await first.channel.until_sent(10)
    await first.settle()
    await second.settle()
    assert sorted(first.channel.texts()) == sorted(f"r{index}" for index in range(10))
    await first.stop()
    await second.stop()
