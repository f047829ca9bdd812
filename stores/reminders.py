"""Reminders: the interface, its rules, and the in-memory backend.

A reminder belongs to the conversation it was made in; it is active until its last firing
(`done`) or until cancelled, and `paused` while its chat cannot be reached (the bot was blocked).
The scheduler loads what is `due`, and claims each firing with `advance`, a compare-and-set on the
reminder's next due time: of several workers (or processes sharing a directory) that try to claim
one firing, exactly one wins, and only that one sends it. Once the firing is handled (its
conversation recorded it as delivered, or gave it up) the scheduler `confirm`s it; a firing
claimed but never confirmed (a crash came between) is listed by `unconfirmed`, so a restart hands
it to its conversation again, which knows by the firing id whether it was already sent.
"""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal, NamedTuple

from stores._time import Clock, format_instant, require_aware, utc_now
from stores.base import StoreError, _Resource

__all__ = [
    "Claim",
    "InvalidReminder",
    "NewReminder",
    "Reminder",
    "ReminderLimitReached",
    "ReminderState",
    "ReminderStore",
    "ReplyTarget",
    "firing_due",
    "firing_id",
]

MAX_TEXT_CHARS = 4096
"""A reminder's text is sent as one Telegram message at most."""


class ReminderState(StrEnum):
    """Where a reminder is in its life."""

    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    """Its chat cannot be reached (the bot was blocked): it does not fire until resumed."""


LIVE = frozenset({ReminderState.ACTIVE, ReminderState.PAUSED})
"""The states a chat's reminders are listed and counted in (against the per-chat limit)."""


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a firing is sent."""

    chat_id: int
    thread_id: int | None = None
    """The forum topic (`message_thread_id`), if the reminder was made in one."""


@dataclass(frozen=True, slots=True)
class NewReminder:
    """What `ReminderStore.create` is given."""

    conversation_id: str
    target: ReplyTarget
    user_id: int
    """The user who made it (whose budget a `run` reminder spends)."""
    text: str
    due: datetime
    """The first firing, aware (any zone; stored in UTC)."""
    timezone: str
    """The user's IANA zone, in which `repeat` is computed."""
    repeat: str | None = None
    """`daily`, `weekdays`, `weekly`, `monthly`, a cron expression, or None for once. Not checked here."""
    run: bool = False
    """True: the text is a task the assistant carries out at due time."""


@dataclass(frozen=True, slots=True)
class Reminder:
    """A stored reminder."""

    id: str
    """Eight hex characters, unique within its conversation."""
    conversation_id: str
    target: ReplyTarget
    user_id: int
    text: str
    next_due: datetime
    """UTC. For a finished reminder, the due time of its last firing (or when it was cancelled)."""
    timezone: str
    repeat: str | None
    run: bool
    state: ReminderState
    created_at: datetime
    last_firing_id: str | None = None
    """`firing_id` of the last firing claimed by `advance`, None before the first."""
    confirmed_firing_id: str | None = None
    """`firing_id` of the last firing `confirm`ed as handled."""

    @property
    def unconfirmed_firing(self) -> str | None:
        """The firing claimed but not confirmed as handled (a crash may have left it unsent), if any."""
        if self.last_firing_id is None or self.last_firing_id == self.confirmed_firing_id:
            return None
        return self.last_firing_id


class Claim(NamedTuple):
    """One firing to claim with `advance_many`: the arguments of `advance`."""

    conversation_id: str
    reminder_id: str
    expected_due: datetime
    new_due: datetime | None


def firing_id(reminder_id: str, due: datetime) -> str:
    """The id of one firing (reminder id and due time), recorded by the conversation like an
    update id so that a replayed firing is recognised: `a1b2c3d4@2026-05-01T07:00:00Z`."""
    return f"{reminder_id}@{format_instant(due)}"


def firing_due(firing: str) -> datetime:
    """The due time a `firing_id` names (aware, UTC); ValueError if it is not a firing id."""
    _, separator, instant = firing.partition("@")
    if not separator:
        raise ValueError(f"not a firing id: {firing!r}")
    return require_aware(datetime.fromisoformat(instant.replace("Z", "+00:00")), "a firing's time")


class ReminderLimitReached(StoreError):
    """The conversation already has `limit` live (active or paused) reminders; nothing was created."""

    def __init__(self, conversation_id: str, limit: int) -> None:
        super().__init__(f"at most {limit} reminders per chat", conversation_id=conversation_id)
        self.limit = limit


class InvalidReminder(StoreError):
    """A reminder that cannot be stored: `reason` is `empty_text` or `text_too_long` (over `limit`)."""

    def __init__(self, reason: Literal["empty_text", "text_too_long"], *, limit: int | None = None) -> None:
        super().__init__(f"reminder rejected: {reason}")
        self.reason = reason
        self.limit = limit


class ReminderStore(_Resource):
    """Reminders of every conversation. `create`, `cancel` and `advance` are durable on return.

    Times are aware datetimes; a naive one raises ValueError (a caller's bug, not the user's).
    """

    def __init__(self, *, clock: Clock = utc_now, max_active_per_conversation: int = 100) -> None:
        self.clock = clock
        self.max_active_per_conversation = max_active_per_conversation

    async def create(self, new: NewReminder) -> Reminder:
        """Store a new active reminder and return it (with its id).

        Raises ReminderLimitReached when the conversation has its maximum of live reminders,
        InvalidReminder for an empty or over-long text.
        """
        require_aware(new.due, "due")
        text = new.text.strip()
        if not text:
            raise InvalidReminder("empty_text")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidReminder("text_too_long", limit=MAX_TEXT_CHARS)
        return await self._create(replace(new, text=text))

    @abstractmethod
    async def _create(self, new: NewReminder) -> Reminder:
        """Store `new` (checked), enforcing `max_active_per_conversation`."""

    @abstractmethod
    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder, or None. A finished one may be forgotten by a backend (then None)."""

    @abstractmethod
    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel an active reminder of this conversation. False if there is none with this id
        (unknown, finished, or another conversation's)."""

    @abstractmethod
    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's live (active and paused) reminders, soonest first."""

    @abstractmethod
    async def due(self, before: datetime) -> list[Reminder]:
        """Every active reminder of every conversation with `next_due <= before`, soonest first.

        What this returns may be stale by the time it is used (another worker may have claimed a
        firing): claim each with `advance` before sending it.
        """

    @abstractmethod
    async def next_due(self) -> datetime | None:
        """The earliest `next_due` of all active reminders, or None when there is none."""

    async def advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        """Claim the firing at `expected_due`: move the reminder to `new_due` (None: it is done).

        Changes the reminder only if it is active and its `next_due` is still `expected_due`, in
        one atomic step (a conditional write), and records `firing_id(reminder_id, expected_due)`
        as its `last_firing_id`. True if this call won the claim; False if another claimed it
        first, or it was cancelled, or it does not exist.
        """
        expected = require_aware(expected_due, "expected_due")
        new = require_aware(new_due, "new_due") if new_due is not None else None
        return await self._advance(conversation_id, reminder_id, expected, new)

    @abstractmethod
    async def _advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        """`advance` with the times checked and in UTC."""

    async def advance_many(self, claims: Sequence[Claim]) -> list[bool]:
        """`advance` for each claim; which of them this call won, in order. A backend that can
        makes them one durable write (the file store: one `fsync` for a whole round of firings)."""
        checked = [
            Claim(
                claim.conversation_id,
                claim.reminder_id,
                require_aware(claim.expected_due, "expected_due"),
                require_aware(claim.new_due, "new_due") if claim.new_due is not None else None,
            )
            for claim in claims
        ]
        return await self._advance_many(checked)

    async def _advance_many(self, claims: Sequence[Claim]) -> list[bool]:
        """`advance_many` with the times checked: one claim after another, unless overridden."""
        return [await self._advance(*claim) for claim in claims]

    async def confirm_many(self, firings: Sequence[tuple[str, str, str]]) -> list[bool]:
        """`confirm` for each (conversation id, reminder id, firing id), in order; one durable write
        where the backend can."""
        return [await self.confirm(*firing) for firing in firings]

    @abstractmethod
    async def confirm(self, conversation_id: str, reminder_id: str, firing: str) -> bool:
        """Record that `firing` was handled (delivered, or given up), so `unconfirmed` no longer
        lists it. True if it is the reminder's last claimed firing (confirming it again is harmless);
        False otherwise (another firing was claimed since, or there is no such reminder)."""

    @abstractmethod
    async def unconfirmed(self) -> list[Reminder]:
        """Every reminder (active, done or paused; not cancelled) whose last claimed firing is not
        confirmed, soonest firing first: what a crash may have left unsent. Only firings due by the
        store's clock are listed (a firing is claimed once it is due, never before)."""

    @abstractmethod
    async def pause(self, conversation_id: str, reminder_id: str) -> bool:
        """Stop an active reminder from firing (its chat cannot be reached) until `resume`d. False
        if there is no active reminder with this id in this conversation."""

    @abstractmethod
    async def resume(self, conversation_id: str, reminder_id: str) -> bool:
        """Make a paused reminder active again, at its `next_due` (which may be past: it is then
        due at once). False if there is no paused reminder with this id in this conversation."""


def build_reminder(new: NewReminder, taken: Collection[str], now: datetime) -> Reminder:
    """A new active reminder from `new`, with an id that none of `taken` has."""
    reminder_id = secrets.token_hex(4)
    while reminder_id in taken:
        reminder_id = secrets.token_hex(4)
    return Reminder(
        id=reminder_id,
        conversation_id=new.conversation_id,
        target=new.target,
        user_id=new.user_id,
        text=new.text,
        next_due=require_aware(new.due, "due"),
        timezone=new.timezone,
        repeat=new.repeat,
        run=new.run,
        state=ReminderState.ACTIVE,
        created_at=require_aware(now, "the clock's time"),
    )


def advanced(reminder: Reminder, expected_due: datetime, new_due: datetime | None) -> Reminder | None:
    """The reminder after winning the claim of the firing at `expected_due`, or None if that
    firing is not there to claim (not active, or already moved on)."""
    if reminder.state is not ReminderState.ACTIVE or reminder.next_due != expected_due:
        return None
    fired = firing_id(reminder.id, expected_due)
    if new_due is None:
        return replace(reminder, state=ReminderState.DONE, last_firing_id=fired)
    return replace(reminder, next_due=new_due, last_firing_id=fired)


def soonest_first(reminders: Collection[Reminder]) -> list[Reminder]:
    """The reminders sorted by next due time (then conversation and id, for a stable order)."""
    return sorted(reminders, key=lambda item: (item.next_due, item.conversation_id, item.id))


def oldest_firing_first(reminders: Collection[Reminder]) -> list[Reminder]:
    """Reminders with unconfirmed firings, sorted by those firings' due times."""
    return sorted(reminders, key=lambda item: (firing_due(item.last_firing_id or ""), item.conversation_id, item.id))


def with_state(reminder: Reminder, state: ReminderState) -> Reminder:
    """The reminder in `state`."""
    return replace(reminder, state=state)


def confirmed(reminder: Reminder, firing: str) -> Reminder | None:
    """The reminder with `firing` confirmed, or None if that is not its last claimed firing."""
    if reminder.last_firing_id != firing:
        return None
    return replace(reminder, confirmed_firing_id=firing)


def is_unconfirmed(reminder: Reminder) -> bool:
    """True if the reminder's last claimed firing still needs confirming (not for a cancelled one)."""
    return reminder.state is not ReminderState.CANCELLED and reminder.unconfirmed_firing is not None


def unconfirmed_by(reminders: Collection[Reminder], now: datetime) -> list[Reminder]:
    """Of `reminders`, those with an unconfirmed firing due by `now`, soonest firing first."""
    found = [item for item in reminders if is_unconfirmed(item) and firing_due(item.last_firing_id or "") <= now]
    return oldest_firing_first(found)
