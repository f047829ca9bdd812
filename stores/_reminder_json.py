"""The JSON form of a reminder, shared by the file and DynamoDB backends."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

from stores._time import from_micros, to_micros
from stores.reminders import Reminder, ReminderState, ReplyTarget

__all__ = ["reminder_from_json", "reminder_to_json"]


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
        "confirmed_firing_id": reminder.confirmed_firing_id,
    }


def reminder_from_json(data: Mapping[str, Any]) -> Reminder:
    """The reminder of `reminder_to_json`'s data; KeyError, TypeError or ValueError if it is not one.

    What many reminders share (their chat and its reply target, zone, repeat rule) is shared in
    memory too, not held once per reminder: the file store keeps every reminder in memory.
    """
    thread_id = data["thread_id"]
    repeat = data["repeat"]
    last = data["last_firing_id"]
    confirmed = data.get("confirmed_firing_id")
    target = _target(_int(data["chat_id"]), _int(thread_id) if thread_id is not None else None)
    user_id = _int(data["user_id"])
    return Reminder(
        id=_str(data["id"]),
        conversation_id=sys.intern(_str(data["conversation_id"])),
        target=target,
        user_id=target.chat_id if user_id == target.chat_id else user_id,  # one int object, in private chats
        text=_str(data["text"]),
        next_due=from_micros(_int(data["next_due"])),
        timezone=sys.intern(_str(data["timezone"])),
        repeat=sys.intern(_str(repeat)) if repeat is not None else None,
        run=bool(data["run"]),
        state=ReminderState(data["state"]),
        created_at=from_micros(_int(data["created"])),
        last_firing_id=_str(last) if last is not None else None,
        confirmed_firing_id=_str(confirmed) if confirmed is not None else None,
    )


@functools.lru_cache(maxsize=65536)
def _target(chat_id: int, thread_id: int | None) -> ReplyTarget:
    return ReplyTarget(chat_id, thread_id)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an int: {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value
