"""The in-memory reminder store: the reference the durable backends are tested against."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from stores._time import Clock, require_aware, utc_now
from stores.reminders import (
    LIVE,
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    advanced,
    build_reminder,
    confirmed,
    soonest_first,
    unconfirmed_by,
    with_state,
)

__all__ = ["InMemoryReminderStore"]


class InMemoryReminderStore(ReminderStore):
    """Reminders in a dict, lost at exit; the reference the durable backends are tested against."""

    def __init__(self, *, clock: Clock = utc_now, max_active_per_conversation: int = 100) -> None:
        super().__init__(clock=clock, max_active_per_conversation=max_active_per_conversation)
        self._by_conversation: dict[str, dict[str, Reminder]] = {}

    async def _create(self, new: NewReminder) -> Reminder:
        reminders = self._by_conversation.setdefault(new.conversation_id, {})
        live = sum(1 for item in reminders.values() if item.state in LIVE)
        if live >= self.max_active_per_conversation:
            raise ReminderLimitReached(new.conversation_id, self.max_active_per_conversation)
        reminder = build_reminder(new, reminders.keys(), self.clock())
        reminders[reminder.id] = reminder
        return reminder

    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder, or None."""
        return self._by_conversation.get(conversation_id, {}).get(reminder_id)

    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel a live reminder of this conversation; False if there is none with this id."""
        return self._change_state(conversation_id, reminder_id, LIVE, ReminderState.CANCELLED)

    async def pause(self, conversation_id: str, reminder_id: str) -> bool:
        """Pause an active reminder of this conversation."""
        return self._change_state(conversation_id, reminder_id, {ReminderState.ACTIVE}, ReminderState.PAUSED)

    async def resume(self, conversation_id: str, reminder_id: str) -> bool:
        """Make a paused reminder of this conversation active again."""
        return self._change_state(conversation_id, reminder_id, {ReminderState.PAUSED}, ReminderState.ACTIVE)

    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's live reminders, soonest first."""
        reminders = self._by_conversation.get(conversation_id, {}).values()
        return soonest_first([item for item in reminders if item.state in LIVE])

    async def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first."""
        limit = require_aware(before, "before")
        return soonest_first([item for item in self._all() if _active(item) and item.next_due <= limit])

    async def next_due(self) -> datetime | None:
        """The earliest next due time of the active reminders."""
        return min((item.next_due for item in self._all() if _active(item)), default=None)

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

    async def confirm(self, conversation_id: str, reminder_id: str, firing: str) -> bool:
        """Confirm the reminder's last claimed firing as handled."""
        reminders = self._by_conversation.get(conversation_id, {})
        reminder = reminders.get(reminder_id)
        after = confirmed(reminder, firing) if reminder is not None else None
        if after is None:
            return False
        reminders[reminder_id] = after
        return True

    async def unconfirmed(self) -> list[Reminder]:
        """Reminders whose last claimed firing is not confirmed, soonest firing first."""
        return unconfirmed_by(self._all(), self.clock())

    def _change_state(
        self, conversation_id: str, reminder_id: str, allowed: Collection[ReminderState], state: ReminderState
    ) -> bool:
        reminders = self._by_conversation.get(conversation_id, {})
        reminder = reminders.get(reminder_id)
        if reminder is None or reminder.state not in allowed:
            return False
        reminders[reminder_id] = with_state(reminder, state)
        return True

    def _all(self) -> list[Reminder]:
        return [item for reminders in self._by_conversation.values() for item in reminders.values()]


def _active(reminder: Reminder) -> bool:
    return reminder.state is ReminderState.ACTIVE
