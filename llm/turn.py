"""The turn loop: model -> tool calls -> tool results -> model, until the model answers or steps run out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog

from llm.base import (
    ChatModel,
    DeltaCallback,
    LLMError,
    ModelReply,
    ModelRequest,
    RecordSink,
    Toolbox,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from llm.context import ImageCost, anthropic_image_tokens, trim_history
from llm.images import fit_images
from llm.records import AssistantRecord, Record, ToolResultRecord, Usage

__all__ = ["STEP_LIMIT_TEXT", "TurnContext", "TurnResult", "TurnTimedOut", "run_turn"]

log = structlog.get_logger(__name__)

STEP_LIMIT_TEXT = (
    "I stopped after {steps} rounds of tool calls without reaching an answer. "
    "Say 'continue' to let me go on, or narrow the question."
)
"""The answer (after any text the model wrote) when a turn reaches its step limit."""

_MAX_QUOTED_ARGUMENTS = 2000


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What one turn is asked: the instructions the model gets (built per turn by the caller: the
    system prompt, and whatever it adds for this user and moment), and how far the turn may go.

    `on_delta` receives the answer's text as the model writes it, and `on_retry` hears that the text
    of the step so far is void because a retry writes it again (see `RetryingChatModel`);
    `context_tokens` is the budget of what the model sees (see `trim_history`), in which an image the
    user sent counts by `image_cost` (the provider's formula); `deadline` (the event loop's clock,
    `loop.time()`) is when the turn's model and tool work must have ended, across all its steps
    (None: no deadline).

    The instructions come in two parts, for prompt caching (see `ModelRequest`): `instructions`,
    the same from turn to turn (the system prompt), and `volatile_instructions`, what changes from
    turn to turn (the date and time, the user's facts), which the model reads after the history.
    """

    instructions: str
    max_steps: int = 8
    context_tokens: int = 16000
    on_delta: DeltaCallback | None = None
    on_retry: Callable[[], None] | None = None
    deadline: float | None = None
    image_cost: ImageCost = anthropic_image_tokens
    volatile_instructions: str = ""


class TurnTimedOut(LLMError):
    """The turn's deadline passed while the model or its tools were still at work. What the turn
    recorded before stays recorded; `steps` counts the model calls it started."""

    def __init__(self, message: str, *, steps: int) -> None:
        super().__init__(message)
        self.steps = steps


@dataclass(frozen=True, slots=True)
class TurnResult:
    """How a turn ended.

    `text` is the answer to send (it may be empty if the model answered with nothing); `steps` counts
    model calls; `stopped_by_step_limit` is True when the model still wanted tools after `max_steps`
    calls; `model_ms` and `tool_ms` are the wall-clock time spent waiting for the model and the tools;
    `usage` adds up what every model call of the turn cost.
    """

    text: str
    steps: int
    stopped_by_step_limit: bool
    model_ms: float
    tool_ms: float
    usage: Usage = field(default_factory=Usage)


async def run_turn(
    model: ChatModel, toolbox: Toolbox, context: TurnContext, *, history: Sequence[Record], record: RecordSink
) -> TurnResult:
    """Run one turn. `history` ends with the new user message (already recorded by the caller).

    Each step asks the model with what `trim_history` lets it see and the toolbox's current tools. If
    the model calls tools, the AssistantRecord (text and `tool_calls`) is passed to `record`, all calls
    of the step run concurrently, and one ToolResultRecord per call, in the calls' order, is passed to
    `record`; then the next step runs. Each `record` is awaited before the turn goes on, so what the
    caller persists is always in order. When the model answers without tools, the final AssistantRecord
    is recorded and its text returned. Every AssistantRecord carries its model call's usage.

    Step limit: after `max_steps` model calls, a reply that still asks for tools is not acted on; the
    turn ends with the model's text plus STEP_LIMIT_TEXT (no extra model call: Anthropic refuses a
    history with tool blocks when no tools are offered, so "answer without tools" cannot be asked
    portably). The user can say "continue" and the next turn sees all results so far.

    Tool failures, unknown tools and arguments that are not a JSON object go back to the model as error
    results. LLMError from the model propagates (nothing is recorded for the failed step), and so does
    cancellation (tool calls in flight are cancelled).

    Deadline: every model call and every step's tool calls run under `context.deadline` (whatever
    the transport's own timeouts: a server that trickles bytes defeats a per-read timeout); when it
    passes, the work in flight is cancelled and TurnTimedOut raised. Recording is never cut off.
    """
    working: list[Record] = list(history)
    model_ms = tool_ms = 0.0
    usage = Usage()
    for step in range(1, context.max_steps + 1):
        specs = list(toolbox.specs())
        request = _request(context, working, specs)
        started = time.perf_counter()
        async with _within(context.deadline, step, "the model"):
            reply = await model.complete(request)
        model_ms += (time.perf_counter() - started) * 1000
        usage += reply.usage
        if not reply.tool_calls or step == context.max_steps:
            answer = _answer(reply, context.max_steps)
            await record(answer)
            return TurnResult(answer.text, step, bool(reply.tool_calls), model_ms, tool_ms, usage)
        asking = AssistantRecord(text=reply.text, tool_calls=reply.tool_calls, usage=reply.usage, model=reply.model)
        await record(asking)
        working.append(asking)
        started = time.perf_counter()
        async with _within(context.deadline, step, "the tools"):
            results = await _call_tools(toolbox, reply.tool_calls, {spec.name for spec in specs})
        tool_ms += (time.perf_counter() - started) * 1000
        results = [await _fitted(result) for result in results]
        for call, result in zip(reply.tool_calls, results, strict=True):
            tool_record = ToolResultRecord(
                tool_call_id=call.id,
                name=call.name,
                content=result.content,
                is_error=result.is_error,
                images=result.images,
            )
            await record(tool_record)
            working.append(tool_record)
    raise AssertionError("unreachable: the last step returns")  # pragma: no cover


def _request(context: TurnContext, working: Sequence[Record], specs: list[ToolSpec]) -> ModelRequest:
    """A step's request: what `trim_history` lets the model see, the instructions in their two parts."""
    every_instruction = "\n\n".join(filter(None, (context.instructions, context.volatile_instructions)))
    messages = trim_history(working, context.context_tokens, every_instruction, image_cost=context.image_cost)
    return ModelRequest(
        context.instructions,
        messages,
        specs,
        context.on_delta,
        _left(context.deadline),
        context.on_retry,
        volatile_system=context.volatile_instructions,
    )


def _left(deadline: float | None) -> float | None:
    """Seconds left until the deadline, as a model request's timeout (a retry policy stops in time)."""
    return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())


@asynccontextmanager
async def _within(deadline: float | None, step: int, what: str) -> AsyncIterator[None]:
    """The block under the turn's deadline; TurnTimedOut if it passes first."""
    if deadline is None:
        yield
        return
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            yield
    except TimeoutError as exc:
        if not scope.expired():
            raise  # a timeout of the work's own, not the deadline's
        raise TurnTimedOut(f"the turn's deadline passed while {what} worked (step {step})", steps=step) from exc


def _answer(reply: ModelReply, max_steps: int) -> AssistantRecord:
    """The turn's final record: the model's answer, or (tools still wanted at the step limit) its text
    and STEP_LIMIT_TEXT, the calls left out."""
    text = reply.text
    if reply.tool_calls:
        text = "\n\n".join(part for part in (reply.text.strip(), STEP_LIMIT_TEXT.format(steps=max_steps)) if part)
        log.warning("turn_step_limit_reached", max_steps=max_steps)
    return AssistantRecord(text=text, usage=reply.usage, model=reply.model)


async def _fitted(result: ToolResult) -> ToolResult:
    """The result with its images fitted to what every provider takes (converted in a thread, as
    Pillow blocks), so the history holds them as they will be sent; unreadable ones become a note."""
    if not result.images:
        return result
    images, notes = await asyncio.to_thread(fit_images, result.images)
    content = "\n".join([result.content, *notes]) if notes else result.content
    return ToolResult(content, result.is_error, images)


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
