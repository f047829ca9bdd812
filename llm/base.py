"""The small interface between the turn loop, chat models and toolboxes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ChatModel",
    "DeltaCallback",
    "Image",
    "LLMError",
    "LLMRejected",
    "LLMUnavailable",
    "Message",
    "ModelReply",
    "RecordSink",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Toolbox",
]

Message = Mapping[str, Any]
"""A history record as the model sees it, in the provider-neutral form the store keeps:

- `{"role": "user", "content": str}`
- `{"role": "assistant", "content": str, "tool_calls": [{"id", "name", "arguments": dict}]}`
  (`tool_calls` optional)
- `{"role": "tool", "tool_call_id": str, "name": str, "content": str, "is_error": bool}`

Other keys (`seq`, `update_id`, timestamps) may be present and are ignored by providers.
"""

DeltaCallback = Callable[[str], None]
"""Called with each piece of text as a streaming provider receives it."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call. `parameters` is a JSON Schema object."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool. `arguments` is None when the model sent arguments that are not a JSON object;
    `raw_arguments` keeps what it sent so the error can be explained back to it."""

    id: str
    name: str
    arguments: Mapping[str, Any] | None
    raw_arguments: str = ""


@dataclass(frozen=True, slots=True)
class Image:
    """An image a tool returned."""

    mime_type: str
    data_base64: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool answered; errors and timeouts are results with `is_error`, not exceptions."""

    content: str
    is_error: bool = False
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelReply:
    """One model response: text, and the tools it wants called (none means the turn is answered)."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


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

    async def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: DeltaCallback | None = None,
        timeout: float | None = None,
    ) -> ModelReply:
        """Ask for the next reply. Raises LLMUnavailable or LLMRejected; never retries by itself
        unless it was built with a retry policy. `timeout` caps this request's seconds below the
        model's own request timeout (a retry policy passes what is left of its budget)."""
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


RecordSink = Callable[[dict[str, Any]], Awaitable[None]]
"""Receives each history record a turn makes (without `seq`), and persists it before the turn goes on."""
