"""The contract every ReminderStore backend keeps: memory, file, DynamoDB (moto over HTTP)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from stores import (
    InvalidReminder,
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReplyTarget,
    StoreError,
    firing_id,
)
from stores.reminders import Claim
from tests.feature_backends import BACKENDS, START, FeatureBackend, make_backend

CHAT = "-1001234567890:42"
OTHER = "555"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FeatureBackend:
    return make_backend(request.param, tmp_path, request, monkeypatch)


def new(
    text: str = "call the bank",
    *,
    at: datetime = START + timedelta(hours=1),
    conversation: str = CHAT,
    repeat: str | None = None,
    run: bool = False,
) -> NewReminder:
    thread = 42 if conversation == CHAT else None
    return NewReminder(
        conversation_id=conversation,
        target=ReplyTarget(int(conversation.split(":")[0]), thread),
        user_id=111,
        text=text,
        due=at,
        timezone="Europe/Berlin",
        repeat=repeat,
        run=run,
    )


async def test_a_created_reminder_is_active_and_reads_back_equal(backend: FeatureBackend) -> None:
    due_in_berlin = datetime(2026, 5, 1, 11, 30, tzinfo=BERLIN)  # 09:30 UTC
    async with backend.reminders() as store:
        made = await store.create(new("  water the plants\n", at=due_in_berlin, repeat="0 9 * * 1-5", run=True))
        assert re.fullmatch(r"[0-9a-f]{8}", made.id)
        assert made.text == "water the plants"
        assert made.next_due == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
        assert made.next_due.tzinfo == UTC
        assert (made.state, made.created_at, made.last_firing_id) == (ReminderState.ACTIVE, START, None)
        assert (made.target, made.user_id, made.timezone, made.repeat, made.run) == (
            ReplyTarget(-1001234567890, 42),
            111,
            "Europe/Berlin",
            "0 9 * * 1-5",
            True,
        )
        assert await store.get(CHAT, made.id) == made
        assert await store.list_for_conversation(CHAT) == [made]
        assert await store.list_for_conversation(OTHER) == []
        assert await store.get(OTHER, made.id) is None


async def test_reminders_survive_reopening_the_store(backend: FeatureBackend) -> None:
    if not backend.durable:
        pytest.skip("the memory backend keeps nothing across objects")
    async with backend.reminders() as store:
        kept = await store.create(new("kept"))
        cancelled = await store.create(new("cancelled"))
        claimed = await store.create(new("claimed", repeat="daily"))
        assert await store.cancel(CHAT, cancelled.id)
        assert await store.advance(CHAT, claimed.id, claimed.next_due, claimed.next_due + timedelta(days=1))
    async with backend.reminders() as store:
        listed = await store.list_for_conversation(CHAT)
        assert [item.text for item in listed] == ["kept", "claimed"]
        assert listed[0] == kept
        assert listed[1].next_due == claimed.next_due + timedelta(days=1)
        assert listed[1].last_firing_id == firing_id(claimed.id, claimed.next_due)


async def test_bad_reminders_are_refused(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        with pytest.raises(ValueError, match="aware"):
            await store.create(new(at=datetime(2026, 5, 1, 9, 0)))  # naive on purpose
        with pytest.raises(InvalidReminder) as empty:
            await store.create(new("   "))
        assert empty.value.reason == "empty_text"
        with pytest.raises(InvalidReminder) as long:
            await store.create(new("x" * 4097))
        assert (long.value.reason, long.value.limit) == ("text_too_long", 4096)
        assert isinstance(long.value, StoreError)
        assert await store.list_for_conversation(CHAT) == []


async def test_a_chat_has_at_most_its_limit_of_active_reminders(backend: FeatureBackend) -> None:
    async with backend.reminders(max_active=3) as store:
        made = [await store.create(new(f"r{index}")) for index in range(3)]
        with pytest.raises(ReminderLimitReached) as raised:
            await store.create(new("one too many"))
        assert (raised.value.limit, raised.value.conversation_id) == (3, CHAT)
        assert len(await store.list_for_conversation(CHAT)) == 3
        await store.create(new("another chat", conversation=OTHER))  # the limit is per chat
        assert await store.advance(CHAT, made[0].id, made[0].next_due, None)  # done: frees a place
        await store.create(new("fits again"))
        assert await store.cancel(CHAT, made[1].id)
        await store.create(new("and again"))


async def test_cancel_is_for_active_reminders_of_that_chat_only(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        made = await store.create(new())
        assert await store.cancel(OTHER, made.id) is False
        assert await store.cancel(CHAT, "00000000") is False
        assert (await store.get(CHAT, made.id)) == made
        assert await store.cancel(CHAT, made.id) is True
        assert await store.cancel(CHAT, made.id) is False
        cancelled = await store.get(CHAT, made.id)
        assert cancelled is not None
        assert cancelled.state is ReminderState.CANCELLED
        assert await store.list_for_conversation(CHAT) == []
        assert await store.due(made.next_due) == []
        assert await store.next_due() is None
        assert await store.advance(CHAT, made.id, made.next_due, None) is False


async def test_due_lists_every_chats_reminders_up_to_the_time_soonest_first(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        assert await store.next_due() is None
        assert await store.due(START + timedelta(days=365)) == []
        late = await store.create(new("late", at=START + timedelta(hours=3)))
        soon = await store.create(new("soon", at=START + timedelta(hours=1), conversation=OTHER))
        middle = await store.create(new("middle", at=START + timedelta(hours=2)))
        exact = START + timedelta(hours=2)
        assert await store.due(exact) == [soon, middle]  # due at exactly `before` is due
        assert await store.due(exact - timedelta(microseconds=1)) == [soon]
        assert await store.due(START) == []
        assert await store.next_due() == soon.next_due
        assert await store.list_for_conversation(CHAT) == [middle, late]
        assert await store.due(datetime(2026, 5, 1, 10, 0, tzinfo=BERLIN)) == [soon]  # 08:00 UTC


async def test_advance_claims_a_firing_once_and_moves_the_reminder_on(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        made = await store.create(new(repeat="daily"))
        first, second = made.next_due, made.next_due + timedelta(days=1)
        assert await store.advance(CHAT, made.id, first, second) is True
        assert await store.advance(CHAT, made.id, first, second) is False  # that firing is claimed
        moved = await store.get(CHAT, made.id)
        assert moved is not None
        assert (moved.next_due, moved.state, moved.last_firing_id) == (
            second,
            ReminderState.ACTIVE,
            f"{made.id}@2026-05-01T08:00:00Z",
        )
        assert await store.due(first) == []
        assert await store.due(second) == [moved]
        assert await store.advance(OTHER, made.id, second, None) is False  # not that chat's reminder
        assert await store.advance(CHAT, made.id, second, None) is True  # the last firing: done
        done = await store.get(CHAT, made.id)
        assert done is not None
        assert (done.state, done.last_firing_id) == (ReminderState.DONE, firing_id(made.id, second))
        assert await store.due(second + timedelta(days=30)) == []
        assert await store.next_due() is None
        assert await store.list_for_conversation(CHAT) == []
        assert await store.advance(CHAT, "00000000", second, None) is False
        with pytest.raises(ValueError, match="aware"):
            await store.advance(CHAT, made.id, datetime(2026, 5, 2, 8, 0), None)  # naive


async def test_of_two_workers_claiming_the_same_firings_exactly_one_wins_each(backend: FeatureBackend) -> None:
    async with backend.reminders() as first, backend.reminders() as second:
        made = [await first.create(new(f"r{index}", repeat="daily")) for index in range(10)]
        # Both workers saw every reminder due; each tries to claim every firing, all at once.
        claims = [
            store.advance(CHAT, item.id, item.next_due, item.next_due + timedelta(days=1))
            for item in made
            for store in (first, second)
        ]
        won = await asyncio.gather(*claims)
        for index in range(10):
            assert sorted(won[2 * index : 2 * index + 2]) == [False, True]
        for store in (first, second):
            assert [item.next_due for item in await store.list_for_conversation(CHAT)] == [
                START + timedelta(days=1, hours=1)
            ] * 10


async def test_firing_ids_name_the_reminder_and_its_due_time_in_utc() -> None:
    assert firing_id("a1b2c3d4", datetime(2026, 5, 1, 9, 0, tzinfo=BERLIN)) == "a1b2c3d4@2026-05-01T07:00:00Z"
    assert (
        firing_id("a1b2c3d4", datetime(2026, 5, 1, 7, 0, 0, 250, tzinfo=UTC)) == "a1b2c3d4@2026-05-01T07:00:00.000250Z"
    )


async def test_hostile_conversation_ids_keep_their_reminders_apart(backend: FeatureBackend) -> None:
    ids = ["../../etc/passwd", "Chat", "chat", "日本語のチャット 🚀", "x" * 3000, "\ud800lone"]
    async with backend.reminders() as store:
        made: dict[str, Reminder] = {}
        for index, conversation in enumerate(ids):
            reminder = NewReminder(conversation, ReplyTarget(index), 1, f"for {index}", START, "UTC")
            made[conversation] = await store.create(reminder)
    async with backend.reminders() as store:
        for conversation in ids:
            assert await store.list_for_conversation(conversation) == [made[conversation]]
        assert len(await store.due(START)) == len(ids)


async def test_a_claimed_firing_is_unconfirmed_until_confirmed_also_across_reopening(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        daily = await store.create(new("daily", repeat="daily"))
        once = await store.create(new("once", at=START + timedelta(hours=2)))
        quiet = await store.create(new("never claimed", at=START + timedelta(hours=3)))
        assert await store.unconfirmed() == []
        backend.clock.advance(hours=2)
        first = daily.next_due
        assert await store.advance(CHAT, daily.id, first, first + timedelta(days=1))
        assert await store.advance(CHAT, once.id, once.next_due, None)
        pending = await store.unconfirmed()
        assert [(item.id, item.unconfirmed_firing) for item in pending] == [
            (daily.id, firing_id(daily.id, first)),
            (once.id, firing_id(once.id, once.next_due)),
        ]
        assert pending[1].state is ReminderState.DONE
        # An unconfirmed firing changes nothing of what is due, or when.
        assert [item.id for item in await store.due(START + timedelta(hours=3))] == [quiet.id]
        assert await store.next_due() == quiet.next_due
    async with backend.reminders() as store:
        assert [item.id for item in await store.unconfirmed()] == [daily.id, once.id]
        assert await store.confirm(CHAT, daily.id, firing_id(daily.id, first)) is True
        assert await store.confirm(CHAT, daily.id, firing_id(daily.id, first)) is True  # again: harmless
        assert await store.confirm(CHAT, once.id, "someone@2026-05-01T09:00:00Z") is False
        assert await store.confirm(OTHER, once.id, firing_id(once.id, once.next_due)) is False
        assert [item.id for item in await store.unconfirmed()] == [once.id]
        assert await store.confirm(CHAT, once.id, firing_id(once.id, once.next_due)) is True
        assert await store.unconfirmed() == []
        confirmed = await store.get(CHAT, daily.id)
        assert confirmed is not None
        assert (confirmed.confirmed_firing_id, confirmed.unconfirmed_firing) == (firing_id(daily.id, first), None)
        assert await store.next_due() == quiet.next_due
        assert [item.id for item in await store.due(first + timedelta(days=1))] == [quiet.id, daily.id]


async def test_confirming_an_older_firing_after_a_newer_claim_changes_nothing(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        made = await store.create(new(repeat="daily"))
        first, second = made.next_due, made.next_due + timedelta(days=1)
        backend.clock.advance(days=2)
        assert await store.advance(CHAT, made.id, first, second)
        assert await store.advance(CHAT, made.id, second, second + timedelta(days=1))
        assert await store.confirm(CHAT, made.id, firing_id(made.id, first)) is False
        assert [item.unconfirmed_firing for item in await store.unconfirmed()] == [firing_id(made.id, second)]


async def test_a_cancelled_reminders_unconfirmed_firing_is_not_listed(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        made = await store.create(new(repeat="daily"))
        backend.clock.advance(hours=1)
        assert await store.advance(CHAT, made.id, made.next_due, made.next_due + timedelta(days=1))
        assert await store.cancel(CHAT, made.id)
        assert await store.unconfirmed() == []
        assert await store.next_due() is None
        assert await store.due(made.next_due + timedelta(days=2)) == []


async def test_a_paused_reminder_is_listed_and_counted_but_never_due_until_resumed(backend: FeatureBackend) -> None:
    async with backend.reminders(max_active=2) as store:
        paused = await store.create(new("paused", repeat="daily"))
        other = await store.create(new("other", at=START + timedelta(hours=5)))
        assert await store.pause(CHAT, paused.id) is True
        assert await store.pause(CHAT, paused.id) is False  # not active any more
        assert await store.pause(OTHER, other.id) is False
        assert [(item.id, item.state) for item in await store.list_for_conversation(CHAT)] == [
            (paused.id, ReminderState.PAUSED),
            (other.id, ReminderState.ACTIVE),
        ]
        with pytest.raises(ReminderLimitReached):
            await store.create(new("a third"))  # a paused reminder still takes its place
        assert await store.due(START + timedelta(days=1)) == [other]
        assert await store.next_due() == other.next_due
        assert await store.advance(CHAT, paused.id, paused.next_due, None) is False  # nothing to claim
        assert await store.resume(CHAT, paused.id) is True
        assert await store.resume(CHAT, paused.id) is False
        resumed = await store.get(CHAT, paused.id)
        assert resumed is not None
        assert (resumed.state, resumed.next_due) == (ReminderState.ACTIVE, paused.next_due)
        assert await store.next_due() == paused.next_due
        assert await store.due(paused.next_due) == [resumed]
        assert await store.pause(CHAT, paused.id) is True
        assert await store.cancel(CHAT, paused.id) is True  # a paused reminder can be cancelled
        assert await store.resume(CHAT, paused.id) is False
        assert await store.list_for_conversation(CHAT) == [other]


async def test_many_claims_and_confirmations_at_once_answer_as_one_by_one_would(backend: FeatureBackend) -> None:
    async with backend.reminders() as store:
        daily = await store.create(new("daily", repeat="daily"))
        once = await store.create(new("once"))
        cancelled = await store.create(new("cancelled"))
        assert await store.cancel(CHAT, cancelled.id)
        backend.clock.advance(hours=2)
        first, second = daily.next_due, daily.next_due + timedelta(days=1)
        won = await store.advance_many(
            [
                Claim(CHAT, daily.id, first, second),
                Claim(CHAT, daily.id, first, second),  # the same firing twice: the second loses
                Claim(CHAT, once.id, once.next_due, None),
                Claim(CHAT, cancelled.id, cancelled.next_due, None),
                Claim(OTHER, once.id, once.next_due, None),
            ]
        )
        assert won == [True, False, True, False, False]
        assert {item.id for item in await store.unconfirmed()} == {daily.id, once.id}
        done = await store.confirm_many(
            [(CHAT, daily.id, firing_id(daily.id, first)), (CHAT, once.id, "nope@2026-05-01T08:00:00Z")]
        )
        assert done == [True, False]
        assert [item.id for item in await store.unconfirmed()] == [once.id]
        with pytest.raises(ValueError, match="aware"):
            await store.advance_many([Claim(CHAT, daily.id, datetime(2026, 5, 2, 8, 0), None)])  # naive
