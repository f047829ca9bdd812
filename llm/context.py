"""What the model sees of a conversation: the one place that decides it, with a cheap token estimate."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from llm.record_json import record_to_json
from llm.records import (
    AssistantRecord,
    ModelMessage,
    Record,
    ReminderFiredRecord,
    ResetRecord,
    ToolCall,
    ToolResultRecord,
    UserRecord,
)

__all__ = [
    "INTERRUPTED_TOOL_RESULT",
    "REMINDER_SENT",
    "REMINDER_TASK",
    "estimate_text_tokens",
    "estimate_tokens",
    "trim_history",
]

# The estimate: one token per 4 characters (rounded up), which is what OpenAI quotes for English text
# and errs on the generous side for code and JSON; plus a fixed overhead per message for the role and
# framing tokens the APIs add. Tool calls count as their JSON; an image counts as a flat 1600 tokens
# (Anthropic's cost of a ~1.15 megapixel image, the largest it keeps unscaled), never as its base64.
_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4
_IMAGE_TOKENS = 1600

INTERRUPTED_TOOL_RESULT = "No result: this tool call was interrupted before it finished. Call it again if needed."
"""The text of the tool result made up for a call whose result was never recorded (a crash mid-step)."""

REMINDER_TASK = (
    "(This is not a message from the user: it is a task the user scheduled earlier, due now. Carry it out, "
    "with your tools if they help, and answer with the result for the user.)\n\n{text}"
)
"""How the model sees a `run` reminder's firing: the user message its turn answers."""

REMINDER_SENT = "(Reminder sent to the user at its time:) {text}"
"""How the model sees a plain reminder's firing: something the assistant said, which needs no answer."""


def estimate_text_tokens(text: str) -> int:
    """Tokens in a piece of text, by the estimate above (the system prompt, say)."""
    return -(-len(text) // _CHARS_PER_TOKEN)


def estimate_tokens(message: ModelMessage) -> int:
    """Tokens one message costs, by the estimate above."""
    match message:
        case UserRecord():
            return _MESSAGE_OVERHEAD + estimate_text_tokens(message.text)
        case AssistantRecord():
            tokens = _MESSAGE_OVERHEAD + estimate_text_tokens(message.text)
            if message.tool_calls:
                calls = record_to_json(message)["tool_calls"]
                tokens += estimate_text_tokens(json.dumps(calls, ensure_ascii=False, default=str))
            return tokens
        case ToolResultRecord():
            tokens = _MESSAGE_OVERHEAD + estimate_text_tokens(message.content) + estimate_text_tokens(message.name)
            return tokens + _IMAGE_TOKENS * len(message.images)


def trim_history(history: Sequence[Record], budget_tokens: int, system: str) -> list[ModelMessage]:
    """What the model sees of `history`: the newest part of it that fits `budget_tokens` together
    with the system prompt. Every provider sends exactly this; nothing else decides it.

    Guarantees, whatever the input:
    - only messages after the last reset are seen; markers (notices, delivered, reset) are the
      conversation's own book-keeping. Summaries are not shown yet; when they are (a summary in
      place of what it covers), it is decided here. A reminder firing is seen in its place: a `run`
      one as the user message of the task (`REMINDER_TASK`), which its turn answers; a plain one as
      what the assistant said (`REMINDER_SENT`), so the model knows of it but never answers it;
    - an assistant message with tool calls and its tool results are kept or dropped together; a tool
      result without its call is dropped, and a call whose result is missing (a crash mid-step) gets a
      made-up error result (`INTERRUPTED_TOOL_RESULT`), so the providers never see a broken pair: this is
      the one place interrupted tool calls are repaired;
    - the result starts with a user message (both APIs want that; Anthropic requires it);
    - the last user message and everything after it (the turn in progress) are always kept, even if
      they alone exceed the budget.
    The kept part is contiguous: an older message is never kept when a newer one was dropped. The work
    is proportional to what is kept (and the markers among it), not to the length of the history.
    """
    used = estimate_text_tokens(system)
    kept: list[list[ModelMessage]] = []  # units, newest first
    in_progress = 0  # how many of `kept` belong to the turn in progress: all of them until a user message
    for unit in _units_newest_first(history):
        cost = estimate_tokens(unit[0]) if len(unit) == 1 else sum(estimate_tokens(message) for message in unit)
        if in_progress and used + cost > budget_tokens:
            break
        used += cost
        kept.append(unit)
        if not in_progress and isinstance(unit[0], UserRecord):
            in_progress = len(kept)
    # Older units are kept from a user message on; without any user message, everything is in progress.
    while in_progress and len(kept) > in_progress and not isinstance(kept[-1][0], UserRecord):
        kept.pop()
    return [message for unit in reversed(kept) for message in unit]


def _units_newest_first(history: Sequence[Record]) -> Iterator[list[ModelMessage]]:
    """The messages after the last reset, newest first, in units that stay together: an assistant
    message with its tool calls' results (each call's first recorded result, or a made-up one), or any
    other single message. Tool results that do not follow their call directly are orphans the APIs
    would reject: left out."""
    results: list[ToolResultRecord] = []  # the tool results just after the message at hand, newest first
    for record in reversed(history):
        if isinstance(record, ToolResultRecord):
            results.append(record)
            continue
        if isinstance(record, AssistantRecord) and record.tool_calls:
            by_call: dict[str, ToolResultRecord] = {}
            for result in reversed(results):
                by_call.setdefault(result.tool_call_id, result)
            yield [record, *(by_call.get(call.id) or _interrupted(call) for call in record.tool_calls)]
        elif isinstance(record, UserRecord | AssistantRecord):
            yield [record]
        elif isinstance(record, ReminderFiredRecord):
            yield [_firing_message(record)]
        elif isinstance(record, ResetRecord):
            return
        else:
            continue  # a marker between a call's results would not separate them from their call
        results = []


def _interrupted(call: ToolCall) -> ToolResultRecord:
    return ToolResultRecord(tool_call_id=call.id, name=call.name, content=INTERRUPTED_TOOL_RESULT, is_error=True)


def _firing_message(record: ReminderFiredRecord) -> UserRecord | AssistantRecord:
    if record.run:
        return UserRecord(text=REMINDER_TASK.format(text=record.text), firing_id=record.firing_id, seq=record.seq)
    return AssistantRecord(text=REMINDER_SENT.format(text=record.text), firing_id=record.firing_id, seq=record.seq)
