"""The file backend of the reminder store: every conversation's reminders in one change log,
`reminders.jsonl` (see stores/_shared_log.py). Every change is `fsync`ed before it returns; store
objects sharing the directory (in one process or several) see one another's changes, and a claim
(`advance`) is checked and written under the log's lock, so exactly one of them wins it.
Compaction keeps only live reminders and those with an unconfirmed firing: a finished one is
forgotten then.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from stores._reminder_json import reminder_from_json, reminder_to_json
from stores._shared_log import Line, SharedLog, make_directory
from stores._time import Clock, require_aware, utc_now
from stores.reminders import (
    LIVE,
    Claim,
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    advanced,
    build_reminder,
    confirmed,
    is_unconfirmed,
    soonest_first,
    unconfirmed_by,
    with_state,
)

__all__ = ["FileReminderStore"]


class _Reminders:
    """Reminders by conversation id, then by reminder id, and a heap of the active ones by due time.

    The heap is tidied lazily: a change pushes the reminder's new entry and leaves the old one,
    which is dropped when it reaches the top (an entry counts only while its reminder is active
    and still due at the entry's time). So `next_due` is O(1) and `due` O(k log n) for k due, not
    a scan of every reminder. Tidying changes no reminder, so reads may do it. The few reminders
    with an unconfirmed firing are kept apart too, so that `unconfirmed` is no scan either.
    """

    __slots__ = ("by_conversation", "heap", "unconfirmed")

    def __init__(self) -> None:
        self.by_conversation: dict[str, dict[str, Reminder]] = {}
        self.heap: list[tuple[datetime, str, str]] = []
        self.unconfirmed: dict[tuple[str, str], Reminder] = {}

    def of(self, conversation_id: str) -> dict[str, Reminder]:
        """The conversation's reminders by id (do not change the dict)."""
        return self.by_conversation.get(conversation_id, {})

    def put(self, reminder: Reminder) -> None:
        """Add or replace a reminder."""
        self.by_conversation.setdefault(reminder.conversation_id, {})[reminder.id] = reminder
        if _active(reminder):
            heapq.heappush(self.heap, (reminder.next_due, reminder.conversation_id, reminder.id))
        if is_unconfirmed(reminder):
            self.unconfirmed[(reminder.conversation_id, reminder.id)] = reminder
        else:
            self.unconfirmed.pop((reminder.conversation_id, reminder.id), None)

    def next_due(self) -> datetime | None:
        """The earliest due time of the active reminders."""
        while self.heap and self._current(self.heap[0]) is None:
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None

    def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first."""
        found: dict[tuple[str, str], tuple[tuple[datetime, str, str], Reminder]] = {}
        while self.heap and self.heap[0][0] <= before:
            entry = heapq.heappop(self.heap)
            reminder = self._current(entry)
            if reminder is not None:
                found.setdefault(entry[1:], (entry, reminder))  # a second equal entry is dropped
        for entry, _ in found.values():
            heapq.heappush(self.heap, entry)
        return [reminder for _, reminder in found.values()]

    def all_active(self) -> list[Reminder]:
        """Every active reminder."""
        return [item for items in self.by_conversation.values() for item in items.values() if _active(item)]

    def kept(self) -> list[Reminder]:
        """What compaction keeps: live reminders, and finished ones with an unconfirmed firing."""
        return [
            item
            for items in self.by_conversation.values()
            for item in items.values()
            if item.state in LIVE or is_unconfirmed(item)
        ]

    def _current(self, entry: tuple[datetime, str, str]) -> Reminder | None:
        reminder = self.of(entry[1]).get(entry[2])
        if reminder is None or not _active(reminder) or reminder.next_due != entry[0]:
            return None
        return reminder


class _ReminderLog(SharedLog[_Reminders]):
    """Every conversation's reminders. Lines: `put` (a reminder's whole new state)."""

    def empty(self) -> _Reminders:
        return _Reminders()

    def fold(self, state: _Reminders, line: Line) -> None:
        if line["op"] != "put":
            raise ValueError(f"unknown change {line['op']!r}")
        state.put(reminder_from_json(line["reminder"]))

    def snapshot(self, state: _Reminders) -> Iterator[Line]:
        # Finished reminders are dropped here, once nothing about them needs doing again.
        return (_put(item) for item in state.kept())


def _put(reminder: Reminder) -> Line:
    return {"op": "put", "reminder": reminder_to_json(reminder)}


def _active(reminder: Reminder) -> bool:
    return reminder.state is ReminderState.ACTIVE


class FileReminderStore(ReminderStore):
    """Reminders in `directory/reminders.jsonl`, all held in memory (about 600 bytes each) with a
    heap by due time: fine for the thousands one process serves; DynamoDB's index serves more."""

    def __init__(
        self, directory: str | os.PathLike[str], *, clock: Clock = utc_now, max_active_per_conversation: int = 100
    ) -> None:
        super().__init__(clock=clock, max_active_per_conversation=max_active_per_conversation)
        self.directory = Path(directory)
        self._log = _ReminderLog(self.directory / "reminders.jsonl")

    async def open(self) -> None:
        """Create the directory if needed."""
        await make_directory(self.directory)

    async def _create(self, new: NewReminder) -> Reminder:
        now, limit = self.clock(), self.max_active_per_conversation

        def step(state: _Reminders) -> tuple[list[Line], Reminder]:
            reminders = state.of(new.conversation_id)
            if sum(item.state in LIVE for item in reminders.values()) >= limit:
                raise ReminderLimitReached(new.conversation_id, limit)
            reminder = build_reminder(new, reminders.keys(), now)
            return [_put(reminder)], reminder

        return await self._log.transact(step)

    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder, or None (also for a finished one after the file was compacted)."""
        return await self._log.read(lambda state: state.of(conversation_id).get(reminder_id))

    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel a live reminder of this conversation; False if there is none with this id."""
        return await self._change_state(conversation_id, reminder_id, LIVE, ReminderState.CANCELLED)

    async def pause(self, conversation_id: str, reminder_id: str) -> bool:
        """Pause an active reminder of this conversation."""
        return await self._change_state(conversation_id, reminder_id, {ReminderState.ACTIVE}, ReminderState.PAUSED)

    async def resume(self, conversation_id: str, reminder_id: str) -> bool:
        """Make a paused reminder of this conversation active again."""
        return await self._change_state(conversation_id, reminder_id, {ReminderState.PAUSED}, ReminderState.ACTIVE)

    async def _change_state(
        self, conversation_id: str, reminder_id: str, allowed: Collection[ReminderState], new: ReminderState
    ) -> bool:
        def step(state: _Reminders) -> tuple[list[Line], bool]:
            reminder = state.of(conversation_id).get(reminder_id)
            if reminder is None or reminder.state not in allowed:
                return [], False
            return [_put(with_state(reminder, new))], True

        return await self._log.transact(step)

    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's live reminders, soonest first."""
        return await self._log.read(
            lambda state: soonest_first([item for item in state.of(conversation_id).values() if item.state in LIVE])
        )

    async def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first."""
        limit = require_aware(before, "before")
        return await self._log.read(lambda state: state.due(limit))

    async def next_due(self) -> datetime | None:
        """The earliest next due time of the active reminders."""
        return await self._log.read(lambda state: state.next_due())

    async def _advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        [won] = await self._advance_many([Claim(conversation_id, reminder_id, expected_due, new_due)])
        return won

    async def _advance_many(self, claims: Sequence[Claim]) -> list[bool]:
        """Every claim checked and written under the lock at once: one `fsync` for them all."""

        def step(state: _Reminders) -> tuple[list[Line], list[bool]]:
            lines: list[Line] = []
            won: list[bool] = []
            seen: dict[tuple[str, str], Reminder] = {}
            for claim in claims:
                key = (claim.conversation_id, claim.reminder_id)
                reminder = seen.get(key) or state.of(claim.conversation_id).get(claim.reminder_id)
                after = advanced(reminder, claim.expected_due, claim.new_due) if reminder is not None else None
                if after is not None:
                    seen[key] = after  # a later claim of the same reminder sees this one
                    lines.append(_put(after))
                won.append(after is not None)
            return lines, won

        return await self._log.transact(step)

    async def confirm(self, conversation_id: str, reminder_id: str, firing: str) -> bool:
        """Confirm the reminder's last claimed firing as handled."""
        [done] = await self.confirm_many([(conversation_id, reminder_id, firing)])
        return done

    async def confirm_many(self, firings: Sequence[tuple[str, str, str]]) -> list[bool]:
        """Confirm each firing, all in one write under the lock (one `fsync`)."""

        def step(state: _Reminders) -> tuple[list[Line], list[bool]]:
            lines: list[Line] = []
            done: list[bool] = []
            for conversation_id, reminder_id, firing in firings:
                reminder = state.of(conversation_id).get(reminder_id)
                after = confirmed(reminder, firing) if reminder is not None else None
                if after is not None and after != reminder:
                    lines.append(_put(after))
                done.append(after is not None)
            return lines, done

        return await self._log.transact(step)

    async def unconfirmed(self) -> list[Reminder]:
        """Reminders whose last claimed firing is not confirmed, soonest firing first."""
        now = self.clock()
        return await self._log.read(lambda state: unconfirmed_by(list(state.unconfirmed.values()), now))
