"""Fitting the history to the model's context budget, with a cheap token estimate."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llm.base import Message

__all__ = ["INTERRUPTED_TOOL_RESULT", "estimate_text_tokens", "estimate_tokens", "trim_history", "visible_to_model"]

# The estimate: one token per 4 characters (rounded up), which is what OpenAI quotes for English text
# and errs on the generous side for code and JSON; plus a fixed overhead per message for the role and
# framing tokens the APIs add. Tool calls count as their JSON; an image counts as a flat 1600 tokens
# (Anthropic's cost of a ~1.15 megapixel image, the largest it keeps unscaled), never as its base64.
_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4
_IMAGE_TOKENS = 1600

INTERRUPTED_TOOL_RESULT = "No result: this tool call was interrupted before it finished. Call it again if needed."
"""The text of the tool record made up for a call whose result was never recorded (a crash mid-step)."""

_ROLES = frozenset({"user", "assistant", "tool"})


def estimate_text_tokens(text: str) -> int:
    """Tokens in a piece of text, by the estimate above (the system prompt, say)."""
    return -(-len(text) // _CHARS_PER_TOKEN)


def estimate_tokens(message: Message) -> int:
    """Tokens one history record costs, by the estimate above."""
    tokens = _MESSAGE_OVERHEAD + estimate_text_tokens(str(message.get("content") or ""))
    calls = message.get("tool_calls")
    if calls:
        tokens += estimate_text_tokens(json.dumps(calls, ensure_ascii=False, default=str))
    if message.get("role") == "tool":
        tokens += estimate_text_tokens(str(message.get("name") or ""))
        tokens += _IMAGE_TOKENS * len(message.get("images") or ())
    return tokens


def visible_to_model(message: Message) -> bool:
    """False for records the model must not see: markers (`{"type": "reset"}`) and unknown roles."""
    return "type" not in message and message.get("role") in _ROLES


def trim_history(messages: Sequence[Message], budget_tokens: int, system: str) -> list[Message]:
    """The newest part of the history that fits `budget_tokens` together with the system prompt.

    Guarantees, whatever the input:
    - records the model must not see are left out (see `visible_to_model`);
    - an assistant message with tool calls and its tool results are kept or dropped together; a tool
      result without its call is dropped, and a call whose result is missing (a crash mid-step) gets a
      made-up error result (`INTERRUPTED_TOOL_RESULT`), so the providers never see a broken pair;
    - the result starts with a user message (both APIs want that; Anthropic requires it);
    - the last user message and everything after it (the turn in progress) are always kept, even if
      they alone exceed the budget.
    The kept part is contiguous: an older message is never kept when a newer one was dropped.
    """
    units = _units([message for message in messages if visible_to_model(message)])
    if not units:
        return []
    last_user = max((i for i, unit in enumerate(units) if unit[0].get("role") == "user"), default=0)
    used = estimate_text_tokens(system) + sum(estimate_tokens(m) for unit in units[last_user:] for m in unit)
    start = last_user
    while start > 0:
        cost = sum(estimate_tokens(m) for m in units[start - 1])
        if used + cost > budget_tokens:
            break
        used += cost
        start -= 1
    while start < last_user and units[start][0].get("role") != "user":
        start += 1
    return [message for unit in units[start:] for message in unit]


def _units(messages: Sequence[Message]) -> list[list[Message]]:
    """Group the history into units that stay together: an assistant message with its tool calls'
    results, or any other single message. Repairs broken pairs as `trim_history` describes."""
    units: list[list[Message]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        if message.get("role") == "tool":
            continue  # its call is not right before it: an orphan the APIs would reject
        is_assistant = message.get("role") == "assistant"
        calls: Sequence[Mapping[str, Any]] = (message.get("tool_calls") or ()) if is_assistant else ()
        if not calls:
            units.append([message])
            continue
        results: dict[str, Message] = {}
        while i < len(messages) and messages[i].get("role") == "tool":
            call_id = str(messages[i].get("tool_call_id", ""))
            results.setdefault(call_id, messages[i])
            i += 1
        unit: list[Message] = [message]
        for call in calls:
            call_id = str(call.get("id", ""))
            unit.append(results.get(call_id) or _interrupted(call_id, str(call.get("name", ""))))
        units.append(unit)
    return units


def _interrupted(call_id: str, name: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": INTERRUPTED_TOOL_RESULT, "is_error": True}
