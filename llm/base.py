"""The small interface between the turn loop, chat models and toolboxes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm.records import Image, ModelMessage, ToolCall, TurnRecord, Usage

__all__ = [
    "ChatModel",
    "DeltaCallback",
    "Image",
    "LLMError",
    "LLMRejected",
    "LLMUnavailable",
    "ModelReply",
    "ModelRequest",
    "RecordSink",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Toolbox",
    "Usage",
]

DeltaCallback = Callable[[str], None]
"""Called with each piece of text as a streaming provider receives it."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call. `parameters` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool answered; errors and timeouts are results with `is_error`, not exceptions."""

    content: str
    is_error: bool = False
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One request to a chat model.

    `messages` are what the model should see, as `llm.context.trim_history` chose them; `on_delta`
    receives the answer's text as it streams in; `timeout` caps this request's seconds below the
    model's own request timeout (a retry policy passes what is left of its budget). `images` are the
    bytes of the images the user sent, by `file_id`, for the providers to show (one not in it is a
    note in the text: see `llm.attachments`). `on_retry` is called before a retry policy asks again:
    the text streamed so far is void, and comes again.

    Prompt caching wants the request's start (tools, `system`, the history) identical from one
    request to the next: `system` holds the instructions that stay the same, `volatile_system`
    those that change from turn to turn (the date and time, the user's facts), which the providers
    send after the history (see each provider). `model` names the model to ask; empty: the one the
    provider was built with.
    """

    system: str
    messages: Sequence[ModelMessage]
    tools: Sequence[ToolSpec] = ()
    on_delta: DeltaCallback | None = None
    timeout: float | None = None
    on_retry: Callable[[], None] | None = None
    images: Mapping[str, Image] = field(default_factory=dict)
    model: str = ""
    volatile_system: str = ""


@dataclass(frozen=True, slots=True)
class ModelReply:
    """One model response: text, and the tools it wants called (none means the turn is answered).

    `usage` is what the provider reported the call cost; `model` names the model that answered.
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    model: str = ""


class LLMError(Exception):
    """Root of chat-model failures. `status` is the HTTP status where there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMUnavailable(LLMError):
    """The model could not be reached or kept failing (429, 5xx, timeouts) until the retry budget ran out.

    `retry_after` is the provider's `Retry-After` in seconds, when it sent one (a retry policy honours it).
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class LLMRejected(LLMError):
    """The provider refused the request (400, 401, 403, 404): retrying will not help; the operator must act."""


class ChatModel(Protocol):
    """A chat model: history and tools in, one reply out."""

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask for the next reply. Raises LLMUnavailable or LLMRejected; never retries by itself
        unless it was built with a retry policy."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client."""
        ...


class Toolbox(Protocol):
    """The tools a turn may call."""

    def specs(self) -> Sequence[ToolSpec]:
        """The tools available now (a server that is down contributes none)."""
        ...

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call a tool by the name its spec gave. Never raises for a tool's failure or timeout:
        those come back as a ToolResult with `is_error`. Cancellation propagates."""
        ...


RecordSink = Callable[[TurnRecord], Awaitable[None]]
"""Receives each record a turn makes (without `seq`), and persists it before the turn goes on."""
