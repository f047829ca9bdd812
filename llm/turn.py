"""The turn loop: model -> tool calls -> tool results -> model, until the model answers or steps run out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from llm.base import ChatModel, DeltaCallback, Message, RecordSink, Toolbox, ToolCall, ToolResult
from llm.context import trim_history

__all__ = ["STEP_LIMIT_TEXT", "TurnResult", "run_turn"]

log = structlog.get_logger(__name__)

STEP_LIMIT_TEXT = (
    "I stopped after {steps} rounds of tool calls without reaching an answer. "
    "Say 'continue' to let me go on, or narrow the question."
)
"""The answer (after any text the model wrote) when a turn reaches its step limit."""

_MAX_QUOTED_ARGUMENTS = 2000


@dataclass(frozen=True, slots=True)
class TurnResult:
    """How a turn ended.

    `text` is the answer to send (it may be empty if the model answered with nothing); `steps` counts
    model calls; `stopped_by_step_limit` is True when the model still wanted tools after `max_steps`
    calls; `model_ms` and `tool_ms` are the wall-clock time spent waiting for the model and the tools.
    """

    text: str
    steps: int
    stopped_by_step_limit: bool
    model_ms: float
    tool_ms: float


async def run_turn(
    model: ChatModel,
    toolbox: Toolbox,
    *,
    system: str,
    history: Sequence[Message],
    record: RecordSink,
    max_steps: int,
    context_tokens: int,
    on_delta: DeltaCallback | None = None,
) -> TurnResult:
    """Run one turn. `history` ends with the new user message (already recorded by the caller).

    Each step trims the history to `context_tokens` (see `trim_history`) and asks the model with the
    toolbox's current tools. If the model calls tools, the assistant record (text and `tool_calls`) is
    passed to `record`, all calls of the step run concurrently, and one tool record per call, in the
    calls' order, is passed to `record`; then the next step runs. Each `record` is awaited before the
    turn goes on, so what the caller persists is always in order. When the model answers without tools,
    the final `{"role": "assistant", "content": text}` is recorded and returned.

    Step limit: after `max_steps` model calls, a reply that still asks for tools is not acted on; the
    turn ends with the model's text plus STEP_LIMIT_TEXT (no extra model call: Anthropic refuses a
    history with tool blocks when no tools are offered, so "answer without tools" cannot be asked
    portably). The user can say "continue" and the next turn sees all results so far.

    Tool failures, unknown tools and arguments that are not a JSON object go back to the model as error
    results. LLMError from the model propagates (nothing is recorded for the failed step), and so does
    cancellation (tool calls in flight are cancelled).
    """
    working: list[Message] = list(history)
    model_ms = tool_ms = 0.0
    for step in range(1, max_steps + 1):
        specs = list(toolbox.specs())
        started = time.perf_counter()
        reply = await model.complete(system, trim_history(working, context_tokens, system), specs, on_delta)
        model_ms += (time.perf_counter() - started) * 1000
        if not reply.tool_calls:
            await record({"role": "assistant", "content": reply.text})
            return TurnResult(reply.text, step, False, model_ms, tool_ms)
        if step == max_steps:
            text = "\n\n".join(part for part in (reply.text.strip(), STEP_LIMIT_TEXT.format(steps=max_steps)) if part)
            log.warning("turn_step_limit_reached", max_steps=max_steps)
            await record({"role": "assistant", "content": text})
            return TurnResult(text, step, True, model_ms, tool_ms)
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text,
            "tool_calls": [_call_record(call) for call in reply.tool_calls],
        }
        await record(assistant)
        working.append(assistant)
        started = time.perf_counter()
        results = await _call_tools(toolbox, reply.tool_calls, {spec.name for spec in specs})
        tool_ms += (time.perf_counter() - started) * 1000
        for call, result in zip(reply.tool_calls, results, strict=True):
            tool_record = _tool_record(call, result)
            await record(tool_record)
            working.append(tool_record)
    raise AssertionError("unreachable: the last step returns")  # pragma: no cover


async def _call_tools(toolbox: Toolbox, calls: Sequence[ToolCall], known: set[str]) -> list[ToolResult]:
    """Run every call of a step concurrently; results in the calls' order."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_call_tool(toolbox, call, known), name=f"tool-call-{call.name}-{call.id}")
            for call in calls
        ]
    return [task.result() for task in tasks]


async def _call_tool(toolbox: Toolbox, call: ToolCall, known: set[str]) -> ToolResult:
    if call.name not in known:
        names = ", ".join(sorted(known)) or "none"
        return ToolResult(f"Error: there is no tool named {call.name!r}. Available tools: {names}.", is_error=True)
    if call.arguments is None:
        quoted = call.raw_arguments[:_MAX_QUOTED_ARGUMENTS]
        return ToolResult(
            f"Error: the arguments for {call.name} were not a valid JSON object: {quoted!r}. "
            "Call the tool again with a JSON object that matches its schema.",
            is_error=True,
        )
    started = time.perf_counter()
    try:
        result = await toolbox.call(call.name, call.arguments)
    except Exception as exc:
        # The Toolbox contract says tool failures come back as results; a toolbox bug must still not
        # take the turn down, and the model can work around a failed tool.
        log.error("tool_call_crashed", tool=call.name, exc_info=exc)
        return ToolResult(f"Error: the tool {call.name} failed unexpectedly.", is_error=True)
    log.debug(
        "tool_called",
        tool=call.name,
        is_error=result.is_error,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return result


def _call_record(call: ToolCall) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": call.id, "name": call.name}
    if call.arguments is None:
        entry["arguments"] = None
        entry["raw_arguments"] = call.raw_arguments
    else:
        entry["arguments"] = dict(call.arguments)
    return entry


def _tool_record(call: ToolCall, result: ToolResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "role": "tool",
        "tool_call_id": call.id,
        "name": call.name,
        "content": result.content,
        "is_error": result.is_error,
    }
    if result.images:
        entry["images"] = [{"mime_type": image.mime_type, "data_base64": image.data_base64} for image in result.images]
    return entry
