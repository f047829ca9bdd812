"""The reminder tools: `create_reminder`, `list_reminders`, `cancel_reminder` (docs/contract.md).

They act on the chat of the turn (`ToolContext.conversation_id`), never on one the model names:
a reminder is made in the chat where it was asked for, for the user who asked, and a chat lists
and cancels only its own. Times are read in the user's zone (`ToolContext.zone`) and checked
against the turn's `now`. A reminder is stored durably before the tool answers, and the scheduler
is told at once (`on_change`), so it fires on time even if it is due in a few seconds.

    reminders = ReminderTools(feature_stores.reminders, on_change=scheduler.wake)
    toolkit = Toolkit(mcp_toolbox, [*reminders.tools])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from llm.base import ToolResult, ToolSpec
from stores.reminders import (
    MAX_TEXT_CHARS,
    InvalidReminder,
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    ReplyTarget,
)
from tools.builtin import BuiltinTool, ToolContext, ToolInputError, text_argument
from tools.schedule import ScheduleError, describe_repeat, first_occurrence, parse_at, parse_repeat

__all__ = ["ReminderTools", "format_local", "reminder_lines"]

WakeScheduler = Callable[[datetime], None]
"""Tells the scheduler that something may now be due at this time (a reminder made or resumed)."""

_CREATE = ToolSpec(
    "create_reminder",
    "Set a reminder in this chat. At the time, the text is sent to the user as written (a plain reminder), "
    "or, with run=true, the text is a task you carry out then, with your tools, and its result is sent. "
    "Returns the reminder's id and when it fires next.",
    {
        "type": "object",
        "properties": {
            "text": {"type": "string", "description": "What to say (or, with run=true, what to do) at the time."},
            "at": {
                "type": "string",
                "description": "When, ISO 8601: '2026-05-01T09:00' is in the user's time zone; an offset "
                "('2026-05-01T09:00+02:00') or a zone name after it ('2026-05-01T09:00 America/New_York') "
                "sets another. Must be in the future.",
            },
            "repeat": {
                "type": "string",
                "description": "Optional: 'daily', 'weekdays', 'weekly' or 'monthly' (at the time of day of "
                "'at', and its weekday or day of the month), or a five-field cron expression in the "
                "user's time zone ('0 9 * * 1-5'). Omit for a one-off reminder.",
            },
            "run": {
                "type": "boolean",
                "description": "Optional: true makes the text a task to carry out at the time (e.g. 'summarise "
                "today's news'); false or omitted sends the text itself.",
            },
        },
        "required": ["text", "at"],
    },
)
_LIST = ToolSpec(
    "list_reminders",
    "List this chat's reminders: id, text, next time (in the user's time zone), repeat rule, whether it "
    "is a task, and whether it is paused.",
    {"type": "object", "properties": {}},
)
_CANCEL = ToolSpec(
    "cancel_reminder",
    "Cancel one of this chat's reminders by its id (list_reminders shows the ids).",
    {
        "type": "object",
        "properties": {"reminder_id": {"type": "string", "description": "The reminder's id, e.g. 'a1b2c3d4'."}},
        "required": ["reminder_id"],
    },
)


class ReminderTools:
    """The three reminder tools, sharing a store and the scheduler's wake-up call."""

    def __init__(self, store: ReminderStore, on_change: WakeScheduler | None = None) -> None:
        self.store = store
        self._on_change = on_change

    @property
    def tools(self) -> Sequence[BuiltinTool]:
        """`create_reminder`, `list_reminders`, `cancel_reminder`."""
        return (_CreateReminder(self), _ListReminders(self), _CancelReminder(self))

    def changed(self, due: datetime) -> None:
        """Tell the scheduler (if any) that a reminder may be due at `due`."""
        if self._on_change is not None:
            self._on_change(due)

    async def resume_paused(self, conversation_id: str) -> int:
        """Make the chat's paused reminders active again (it can be reached again); how many.
        One that fell due meanwhile fires at once, as a late one."""
        resumed = 0
        for reminder in await self.store.list_for_conversation(conversation_id):
            if reminder.state is ReminderState.PAUSED and await self.store.resume(conversation_id, reminder.id):
                self.changed(reminder.next_due)
                resumed += 1
        return resumed


class _CreateReminder:
    spec = _CREATE

    def __init__(self, owner: ReminderTools) -> None:
        self._owner = owner

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        text = text_argument(arguments, "text", max_chars=MAX_TEXT_CHARS)
        at_text = text_argument(arguments, "at")
        run = arguments.get("run", False)
        if not isinstance(run, bool):
            raise ToolInputError("The argument 'run' must be true or false.")
        repeat = arguments.get("repeat")
        if repeat is not None and not isinstance(repeat, str):
            raise ToolInputError("The argument 'repeat' must be a string such as 'daily' or '0 9 * * 1-5'.")
        zone = context.zone
        try:
            # Whole seconds: a repeat rule keeps the wall time to the second.
            at = parse_at(at_text, zone).replace(microsecond=0)
            rule = parse_repeat(repeat, at, zone)
            due = first_occurrence(rule, at, zone)
        except ScheduleError as exc:
            raise ToolInputError(str(exc)) from None
        if due <= context.now:
            raise ToolInputError(
                f"The time {at_text!r} ({format_local(due, zone)}) is in the past: it is now "
                f"{format_local(context.now, zone)}. Choose a later time."
            )
        new = NewReminder(
            conversation_id=context.conversation_id,
            target=ReplyTarget(context.target.chat_id, context.target.message_thread_id),
            user_id=context.user_id if context.user_id is not None else 0,
            text=text,
            due=due,
            timezone=zone.key,
            repeat=str(rule) if rule is not None else None,
            run=run,
        )
        try:
            made = await self._owner.store.create(new)
        except ReminderLimitReached as exc:
            raise ToolInputError(
                f"This chat already has {exc.limit} reminders, the most it may have. Cancel one first "
                "(list_reminders shows them)."
            ) from None
        except InvalidReminder as exc:
            raise ToolInputError(f"The reminder's text is not acceptable ({exc.reason}).") from None
        self._owner.changed(made.next_due)
        return ToolResult(json.dumps(_as_json(made, zone), ensure_ascii=False))


class _ListReminders:
    spec = _LIST

    def __init__(self, owner: ReminderTools) -> None:
        self._owner = owner

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        reminders = await self._owner.store.list_for_conversation(context.conversation_id)
        listed = [_as_json(item, context.zone) for item in reminders]
        return ToolResult(json.dumps({"reminders": listed}, ensure_ascii=False))


class _CancelReminder:
    spec = _CANCEL

    def __init__(self, owner: ReminderTools) -> None:
        self._owner = owner

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        reminder_id = text_argument(arguments, "reminder_id").lower()
        if not await self._owner.store.cancel(context.conversation_id, reminder_id):
            raise ToolInputError(
                f"This chat has no reminder with the id {reminder_id!r} (list_reminders shows its reminders)."
            )
        return ToolResult(json.dumps({"cancelled": reminder_id}))


def format_local(moment: datetime, zone: ZoneInfo) -> str:
    """`Fri 1 May 2026, 09:00 (Europe/Berlin)`: an instant as the user reads it."""
    local = moment.astimezone(zone)
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    return f"{local:%a} {local.day} {local:%b %Y}, {clock} ({zone.key})"


def reminder_lines(reminders: Sequence[Reminder], zone: ZoneInfo) -> list[str]:
    """One Markdown line per reminder, for `/reminders`: id, when, repeat, what."""
    lines = []
    for reminder in reminders:
        when = format_local(reminder.next_due, zone)
        if reminder.repeat is not None:
            when = f"{describe_repeat(reminder.repeat)}, next {when}"
        kind = "task: " if reminder.run else ""
        paused = " (paused: this chat could not be reached)" if reminder.state is ReminderState.PAUSED else ""
        lines.append(f"• `{reminder.id}` {when}{paused}: {kind}{reminder.text}")
    return lines


def _as_json(reminder: Reminder, zone: ZoneInfo) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reminder_id": reminder.id,
        "text": reminder.text,
        "next": reminder.next_due.astimezone(zone).isoformat(),
        "next_in_words": format_local(reminder.next_due, zone),
        "repeat": describe_repeat(reminder.repeat),
        "run": reminder.run,
    }
    if reminder.state is ReminderState.PAUSED:
        data["paused"] = True
    return data
