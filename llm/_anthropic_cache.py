"""Prompt caching for Anthropic's Messages API: where the `cache_control` breakpoints go.

Anthropic caches a request's prefix (tools, then system, then messages, in that order) up to each
block marked `cache_control`, and a later request reads it when its own prefix up to a breakpoint,
or up to one of the ~20 blocks before a breakpoint, is identical. A request may mark at most 4
blocks. Prefixes shorter than the model's minimum (1024 tokens for Sonnet and Opus) are not cached,
and cost nothing extra. The breakpoints, all 5-minute (`ephemeral`):

1. the last tool definition: the tools start the prompt and change only when a tool server comes or goes;
2. the system prompt (its one block): the instructions that stay the same from turn to turn;
3. the last block of the history: everything this request adds is written, so the next request
   (the turn's next step, or the next turn) reads all of it and pays full price only for what is new;
4. the last block before the last assistant message: where the previous request's history ended
   (the previous step's tool results, or the user's message the last turn answered), so that
   prefix is found even when more than 20 blocks came after it (many tool calls at once).

What changes every turn (`ModelRequest.volatile_system`: the date and time, the user's facts) goes
after breakpoint 3, as the last text block of the last user message, so it never breaks the prefix.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LOOKBACK_BLOCKS", "cache_breakpoints", "volatile_block"]

LOOKBACK_BLOCKS = 20
"""How far before a breakpoint Anthropic looks for a cached prefix, in blocks."""
_EPHEMERAL = {"type": "ephemeral"}


def cache_breakpoints(body: dict[str, Any]) -> None:
    """Mark `body`'s tools, system prompt and history for caching, in place (see the module docstring).

    A string `system` becomes one text block (the same prompt to the model). Call it before
    `volatile_block` adds the volatile instructions.
    """
    tools = body.get("tools")
    if tools:
        tools[-1] = {**tools[-1], "cache_control": _EPHEMERAL}
    system = body.get("system")
    if isinstance(system, str) and system.strip():
        body["system"] = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
    messages = body.get("messages") or []
    if messages:
        messages[-1]["content"][-1]["cache_control"] = _EPHEMERAL
    answered = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    if answered and answered[-1] > 0:
        messages[answered[-1] - 1]["content"][-1]["cache_control"] = _EPHEMERAL


def volatile_block(messages: list[dict[str, Any]], text: str) -> None:
    """Add `text` as the last text block of the last user message (after any tool results, as the
    API requires), or as a user message of its own if the last message is the assistant's. It is
    wrapped in `<instructions>` tags: in the user's turn, the model must still read it as the system's."""
    if not text.strip():
        return
    block = {"type": "text", "text": f"<instructions>\n{text}\n</instructions>"}
    if messages and messages[-1]["role"] == "user":
        messages[-1]["content"].append(block)
    else:
        messages.append({"role": "user", "content": [block]})
