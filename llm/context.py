"""What the model sees of a conversation: the one place that decides it, with a cheap token estimate."""

from __future__ import annotations

import json
from collections.abc import Sequence

from llm.record_json import record_to_json
from llm.records import AssistantRecord, ModelMessage, Record, ResetRecord, ToolCall, ToolResultRecord, UserRecord

__all__ = ["INTERRUPTED_TOOL_RESULT", "estimate_text_tokens", "estimate_tokens", "trim_history", "visible_to_model"]

# The estimate: one token per 4 characters (rounded up), which is what OpenAI quotes for English text
# and errs on the generous side for code and JSON; plus a fixed overhead per message for the role and
# framing tokens the APIs add. Tool calls count as their JSON; an image counts as a flat 1600 tokens
# (Anthropic's cost of a ~1.15 megapixel image, the largest it keeps unscaled), never as its base64.
_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4
_IMAGE_TOKENS = 1600

INTERRUPTED_TOOL_RESULT = "No result: this tool call was interrupted before it finished. Call it again if needed."
"""The text of the tool result made up for a call whose result was never recorded (a crash mid-step)."""


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


def visible_to_model(history: Sequence[Record]) -> list[ModelMessage]:
    """The messages of the history the model may see, in order: those after the last reset.
    Markers (notices, delivered, reset) are for the conversation's own book-keeping. Summaries and
    reminder firings are not shown yet; when they are (a summary in place of what it covers), it is
    decided here."""
    start = max((i + 1 for i, record in enumerate(history) if isinstance(record, ResetRecord)), default=0)
    return [record for record in history[start:] if isinstance(record, UserRecord | AssistantRecord | ToolResultRecord)]


def trim_history(history: Sequence[Record], budget_tokens: int, system: str) -> list[ModelMessage]:
    """What the model sees of `history`: the newest part of it that fits `budget_tokens` together
    with the system prompt. Every provider sends exactly this.

    Guarantees, whatever the input:
    - only what `visible_to_model` lets through is kept;
    - an assistant message with tool calls and its tool results are kept or dropped together; a tool
      result without its call is dropped, and a call whose result is missing (a crash mid-step) gets a
      made-up error result (`INTERRUPTED_TOOL_RESULT`), so the providers never see a broken pair: this is
      the one place interrupted tool calls are repaired;
    - the result starts with a user message (both APIs want that; Anthropic requires it);
    - the last user message and everything after it (the turn in progress) are always kept, even if
      they alone exceed the budget.
    The kept part is contiguous: an older message is never kept when a newer one was dropped.
    """
    units = _units(visible_to_model(history))
    if not units:
        return []
    last_user = max((i for i, unit in enumerate(units) if isinstance(unit[0], UserRecord)), default=0)
    used = estimate_text_tokens(system) + sum(estimate_tokens(m) for unit in units[last_user:] for m in unit)
    start = last_user
    while start > 0:
        cost = sum(estimate_tokens(m) for m in units[start - 1])
        if used + cost > budget_tokens:
            break
        used += cost
        start -= 1
    while start < last_user and not isinstance(units[start][0], UserRecord):
        start += 1
    return [message for unit in units[start:] for message in unit]


def _units(messages: Sequence[ModelMessage]) -> list[list[ModelMessage]]:
    """Group the messages into units that stay together: an assistant message with its tool calls'
    results, or any other single message. Repairs broken pairs as `trim_history` describes."""
    units: list[list[ModelMessage]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        if isinstance(message, ToolResultRecord):
            continue  # its call is not right before it: an orphan the APIs would reject
        if not isinstance(message, AssistantRecord) or not message.tool_calls:
            units.append([message])
            continue
        results: dict[str, ToolResultRecord] = {}
        while i < len(messages) and isinstance(result := messages[i], ToolResultRecord):
            results.setdefault(result.tool_call_id, result)
            i += 1
        unit: list[ModelMessage] = [message]
        unit += [results.get(call.id) or _interrupted(call) for call in message.tool_calls]
        units.append(unit)
    return units


def _interrupted(call: ToolCall) -> ToolResultRecord:
    return ToolResultRecord(tool_call_id=call.id, name=call.name, content=INTERRUPTED_TOOL_RESULT, is_error=True)
