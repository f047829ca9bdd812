"""Reminders: the interface, its rules, and the in-memory backend.

A reminder belongs to the conversation it was made in; it is active until its last firing
(`done`) or until cancelled. The scheduler loads what is `due`, and claims each firing with
`advance`, a compare-and-set on the reminder's next due time: of several workers (or processes
sharing a directory) that try to claim one firing, exactly one wins, and only that one sends it.
"""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from stores._time import Clock, format_instant, from_micros, require_aware, to_micros, utc_now
from stores.base import StoreError, _Resource

__all__ = [
    "InMemoryReminderStore",
    "InvalidReminder",
    "NewReminder",
    "Reminder",
    "ReminderLimitReached",
    "ReminderState",
    "ReminderStore",
    "ReplyTarget",
    "firing_id",
]

MAX_TEXT_CHARS = 4096
"""A reminder's text is sent as one Telegram message at most."""


class ReminderState(StrEnum):
    """Where a reminder is in its life."""

    ACTIVE = "active"
    DONE = "done"
    CANCELLED = "cancelled"


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


def firing_id(reminder_id: str, due: datetime) -> str:
    """The id of one firing (reminder id and due time), recorded by the conversation like an
    update id so that a replayed firing is recognised: `a1b2c3d4@2026-05-01T07:00:00Z`."""
    return f"{reminder_id}@{format_instant(due)}"


class ReminderLimitReached(StoreError):
    """The conversation already has `limit` active reminders; nothing was created."""

    def __init__(self, conversation_id: str, limit: int) -> None:
        super().__init__(f"at most {limit} active reminders per chat", conversation_id=conversation_id)
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

        Raises ReminderLimitReached when the conversation has its maximum of active reminders,
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
        """The conversation's active reminders, soonest first."""

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


def reminder_to_json(reminder: Reminder) -> dict[str, Any]:
    """The reminder as JSON-ready data (instants as epoch microseconds)."""
    return {
        "id": reminder.id,
        "conversation_id": reminder.conversation_id,
        "chat_id": reminder.target.chat_id,
        "thread_id": reminder.target.thread_id,
        "user_id": reminder.user_id,
        "text": reminder.text,
        "next_due": to_micros(reminder.next_due),
        "timezone": reminder.timezone,
        "repeat": reminder.repeat,
        "run": reminder.run,
        "state": reminder.state.value,
        "created": to_micros(reminder.created_at),
        "last_firing_id": reminder.last_firing_id,
    }


def reminder_from_json(data: Mapping[str, Any]) -> Reminder:
    """The reminder of `reminder_to_json`'s data; KeyError, TypeError or ValueError if it is not one."""
    thread_id = data["thread_id"]
    repeat = data["repeat"]
    last = data["last_firing_id"]
    return Reminder(
        id=_str(data["id"]),
        conversation_id=_str(data["conversation_id"]),
        target=ReplyTarget(_int(data["chat_id"]), _int(thread_id) if thread_id is not None else None),
        user_id=_int(data["user_id"]),
        text=_str(data["text"]),
        next_due=from_micros(_int(data["next_due"])),
        timezone=_str(data["timezone"]),
        repeat=_str(repeat) if repeat is not None else None,
        run=bool(data["run"]),
        state=ReminderState(data["state"]),
        created_at=from_micros(_int(data["created"])),
        last_firing_id=_str(last) if last is not None else None,
    )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an int: {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def soonest_first(reminders: Collection[Reminder]) -> list[Reminder]:
    """The reminders sorted by next due time (then conversation and id, for a stable order)."""
    return sorted(reminders, key=lambda item: (item.next_due, item.conversation_id, item.id))


class InMemoryReminderStore(ReminderStore):
    """Reminders in a dict, lost at exit; the reference the durable backends are tested against."""

    def __init__(self, *, clock: Clock = utc_now, max_active_per_conversation: int = 100) -> None:
        super().__init__(clock=clock, max_active_per_conversation=max_active_per_conversation)
        self._by_conversation: dict[str, dict[str, Reminder]] = {}

    async def _create(self, new: NewReminder) -> Reminder:
        reminders = self._by_conversation.setdefault(new.conversation_id, {})
        active = sum(1 for item in reminders.values() if item.state is ReminderState.ACTIVE)
        if active >= self.max_active_per_conversation:
            raise ReminderLimitReached(new.conversation_id, self.max_active_per_conversation)
        reminder = build_reminder(new, reminders.keys(), self.clock())
        reminders[reminder.id] = reminder
        return reminder

    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder, or None."""
        return self._by_conversation.get(conversation_id, {}).get(reminder_id)

    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel an active reminder of this conversation; False if there is none with this id."""
        reminders = self._by_conversation.get(conversation_id, {})
        reminder = reminders.get(reminder_id)
        if reminder is None or reminder.state is not ReminderState.ACTIVE:
            return False
        reminders[reminder_id] = replace(reminder, state=ReminderState.CANCELLED)
        return True

    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's active reminders, soonest first."""
        reminders = self._by_conversation.get(conversation_id, {}).values()
        return soonest_first([item for item in reminders if item.state is ReminderState.ACTIVE])

    async def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first."""
        limit = require_aware(before, "before")
        return soonest_first([item for item in self._active() if item.next_due <= limit])

    async def next_due(self) -> datetime | None:
        """The earliest next due time of the active reminders."""
        return min((item.next_due for item in self._active()), default=None)

    async def _advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        reminders = self._by_conversation.get(conversation_id, {})
        reminder = reminders.get(reminder_id)
        after = advanced(reminder, expected_due, new_due) if reminder is not None else None
        if after is None:
            return False
        reminders[reminder_id] = after
        return True

    def _active(self) -> list[Reminder]:
        return [
            item
            for reminders in self._by_conversation.values()
            for item in reminders.values()
            if item.state is ReminderState.ACTIVE
        ]
