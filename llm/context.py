"""What the model sees of a conversation: the one place that decides it, with a cheap token estimate."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from llm.record_json import record_to_json
from llm.records import (
    AssistantRecord,
    ModelMessage,
    Record,
    ResetRecord,
    SummaryRecord,
    ToolCall,
    ToolResultRecord,
    UserRecord,
)

__all__ = [
    "INTERRUPTED_TOOL_RESULT",
    "SUMMARY_HEADER",
    "estimate_stored_tokens",
    "estimate_text_tokens",
    "estimate_tokens",
    "summary_message",
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

SUMMARY_HEADER = (
    "[Summary of the earlier part of this conversation, written by you (the assistant) to keep it "
    "within your memory; it is not a new message from the user.]"
)
"""What the model reads before a summary's text, where the records it covers were."""


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


def estimate_stored_tokens(data: Mapping[str, Any]) -> int:
    """`estimate_tokens` of a stored record, read off its JSON (`llm.record_json`) without decoding it
    (an activation estimates many records it may never decode); markers and malformed fields cost 0."""
    role = data.get("role")
    if role not in ("user", "assistant", "tool"):
        return 0
    tokens = _MESSAGE_OVERHEAD + _text_tokens(data.get("content"))
    if role == "assistant" and data.get("tool_calls"):
        tokens += estimate_text_tokens(json.dumps(data["tool_calls"], ensure_ascii=False, default=str))
    elif role == "tool":
        images = data.get("images")
        tokens += _text_tokens(data.get("name")) + _IMAGE_TOKENS * (len(images) if isinstance(images, list) else 0)
    return tokens


def _text_tokens(value: object) -> int:
    return estimate_text_tokens(value) if isinstance(value, str) else 0


def trim_history(history: Sequence[Record], budget_tokens: int, system: str) -> list[ModelMessage]:
    """What the model sees of `history`: the newest part of it that fits `budget_tokens` together
    with the system prompt. Every provider sends exactly this; nothing else decides it.

    Guarantees, whatever the input:
    - only messages after the last reset are seen; markers (notices, delivered, reset) are the
      conversation's own book-keeping. The latest summary is seen in place of the records it covers
      (as a user message, `summary_message`), before the records after them; a summary that covers
      records from before the last reset is not seen. Reminder firings are not shown yet;
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


def summary_message(summary: SummaryRecord) -> UserRecord:
    """How the model reads a summary: a user message (both APIs accept it anywhere a user message
    may stand), under SUMMARY_HEADER."""
    return UserRecord(text=f"{SUMMARY_HEADER}\n\n{summary.text}", seq=summary.seq)


def _units_newest_first(history: Sequence[Record]) -> Iterator[list[ModelMessage]]:
    """The messages after the last reset, newest first, in units that stay together: an assistant
    message with its tool calls' results (each call's first recorded result, or a made-up one), or any
    other single message; last, the latest summary in place of the records it covers. Tool results that
    do not follow their call directly are orphans the APIs would reject: left out."""
    summary: SummaryRecord | None = None
    for unit in _messages_newest_first(history):
        if isinstance(unit, SummaryRecord):
            summary = unit
        else:
            yield unit
    if summary is not None:
        yield [summary_message(summary)]


def _messages_newest_first(history: Sequence[Record]) -> Iterator[list[ModelMessage] | SummaryRecord]:
    """The units of `_units_newest_first` before its summary, then the summary to show (if any)."""
    results: list[ToolResultRecord] = []  # the tool results just after the message at hand, newest first
    summary: SummaryRecord | None = None
    for record in reversed(history):
        if summary is not None and record.seq is not None and record.seq <= summary.last_seq:
            break  # this and everything older is in the summary
        if isinstance(record, SummaryRecord):
            summary = summary or record  # the newest summary covers what older ones did
            continue
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
        elif isinstance(record, ResetRecord):
            if summary is not None and record.seq is not None and summary.first_seq <= record.seq:
                summary = None  # it tells of what the reset put out of sight
            break
        else:
            continue  # a marker between a call's results would not separate them from their call
        results = []
    if summary is not None:
        yield summary


def _interrupted(call: ToolCall) -> ToolResultRecord:
    return ToolResultRecord(tool_call_id=call.id, name=call.name, content=INTERRUPTED_TOOL_RESULT, is_error=True)
