"""The file backend of the reminder store: every conversation's reminders in one change log,
`reminders.jsonl` (see stores/_shared_log.py). Every change is `fsync`ed before it returns; store
objects sharing the directory (in one process or several) see one another's changes, and a claim
(`advance`) is checked and written under the log's lock, so exactly one of them wins it.
Compaction keeps only active reminders: a finished one is forgotten then.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from stores._shared_log import Line, SharedLog, make_directory
from stores._time import Clock, to_micros, utc_now
from stores.reminders import (
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    advanced,
    build_reminder,
    reminder_from_json,
    reminder_to_json,
    soonest_first,
)

__all__ = ["FileReminderStore"]


_Reminders = dict[str, dict[str, Reminder]]
"""Reminders by conversation id, then by reminder id."""


class _ReminderLog(SharedLog[_Reminders]):
    """Every conversation's reminders. Lines: `put` (a reminder's whole new state)."""

    def empty(self) -> _Reminders:
        return {}

    def fold(self, state: _Reminders, line: Line) -> None:
        if line["op"] != "put":
            raise ValueError(f"unknown change {line['op']!r}")
        reminder = reminder_from_json(line["reminder"])
        state.setdefault(reminder.conversation_id, {})[reminder.id] = reminder

    def snapshot(self, state: _Reminders) -> list[Line]:
        # Finished reminders are dropped here: only active ones are needed again.
        return [_put(item) for items in state.values() for item in items.values() if _active(item)]


def _put(reminder: Reminder) -> Line:
    return {"op": "put", "reminder": reminder_to_json(reminder)}


def _active(reminder: Reminder) -> bool:
    return reminder.state is ReminderState.ACTIVE


class FileReminderStore(ReminderStore):
    """Reminders in `directory/reminders.jsonl`. `due` and `next_due` scan every reminder in
    memory: fine for the thousands one process serves; DynamoDB's index serves more."""

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
            reminders = state.get(new.conversation_id, {})
            if sum(map(_active, reminders.values())) >= limit:
                raise ReminderLimitReached(new.conversation_id, limit)
            reminder = build_reminder(new, reminders.keys(), now)
            return [_put(reminder)], reminder

        return await self._log.transact(step)

    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder, or None (also for a finished one after the file was compacted)."""
        return await self._log.read(lambda state: state.get(conversation_id, {}).get(reminder_id))

    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel an active reminder of this conversation; False if there is none with this id."""

        def step(state: _Reminders) -> tuple[list[Line], bool]:
            reminder = state.get(conversation_id, {}).get(reminder_id)
            if reminder is None or not _active(reminder):
                return [], False
            return [_put(_replace_state(reminder, ReminderState.CANCELLED))], True

        return await self._log.transact(step)

    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's active reminders, soonest first."""
        return await self._log.read(
            lambda state: soonest_first([item for item in state.get(conversation_id, {}).values() if _active(item)])
        )

    async def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first."""
        limit = to_micros(before)
        return await self._log.read(
            lambda state: soonest_first([item for item in _all_active(state) if to_micros(item.next_due) <= limit])
        )

    async def next_due(self) -> datetime | None:
        """The earliest next due time of the active reminders."""
        return await self._log.read(lambda state: min((item.next_due for item in _all_active(state)), default=None))

    async def _advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        def step(state: _Reminders) -> tuple[list[Line], bool]:
            reminder = state.get(conversation_id, {}).get(reminder_id)
            after = advanced(reminder, expected_due, new_due) if reminder is not None else None
            return ([_put(after)], True) if after is not None else ([], False)

        return await self._log.transact(step)


def _all_active(state: _Reminders) -> list[Reminder]:
    return [item for items in state.values() for item in items.values() if _active(item)]


def _replace_state(reminder: Reminder, state: ReminderState) -> Reminder:
    return replace(reminder, state=state)
