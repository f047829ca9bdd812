"""What the fake model server is told to answer (specs) and what it records of a request."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes._llm_images import FakeImage
from tests.fakes._llm_tokens import FakeUsage


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with text (streamed as several deltas when the client streams). `first_token_delay` and
    `chars_per_second` override the server's pacing for this answer. `keepalive_seconds` keeps the
    client waiting that long first, as OpenRouter does: the response starts at once and a byte of
    whitespace (an SSE comment when streamed) follows every 0.2 s, so no read ever times out."""

    text: str
    first_token_delay: float | None = None
    chars_per_second: float | None = None
    keepalive_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class CallTools:
    """Ask for tool calls: (name, arguments) pairs; a str is sent verbatim as the arguments JSON
    (so it may be invalid), a mapping is encoded. `text` goes before the calls."""

    calls: Sequence[tuple[str, Mapping[str, Any] | str]]
    text: str = ""
    first_token_delay: float | None = None
    chars_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with an HTTP error in the provider's error shape; `retry_after` sets Retry-After (seconds)."""

    status: int
    retry_after: float | None = None
    body: Any = None


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer (until the server closes): for client timeouts."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """A broken answer. `json`: a body (or SSE event) that is not JSON; `shape`: JSON that is not a
    completion (a stream that ends without its final event); `disconnect`: the connection drops half-way."""

    kind: Literal["json", "shape", "disconnect"] = "json"


ResponseSpec = Reply | CallTools | Fail | Hang | Malformed
Handler = Callable[["FakeLLMRequest"], "ResponseSpec | None"]


@dataclass(frozen=True, slots=True)
class FakeToolResult:
    """A tool result the client sent back."""

    tool_call_id: str
    content: str
    is_error: bool


@dataclass(slots=True)
class FakeLLMRequest:
    """A request the server received. `headers` has lower-case names; `json` is the parsed body (None
    if it was not JSON); `rejection` is the error message when the server refused it (400/401)."""

    provider: Literal["openai", "anthropic"]
    path: str
    headers: Mapping[str, str]
    json: Any
    received_at: float = field(default_factory=time.monotonic)
    rejection: str | None = None
    images: list[FakeImage] = field(default_factory=list)
    """Images the request carried (checked, decoded), in order."""
    usage: FakeUsage | None = None
    """The usage the server reported (None if the request was refused)."""
    first_text_at: float | None = None
    """`time.monotonic()` when the answer's first text went out (streamed: its first delta)."""
    last_text_at: float | None = None
    """... and its last text (streamed: the last delta; whole: the answer)."""

    @property
    def stream(self) -> bool:
        """True if the client asked for a streamed answer."""
        return isinstance(self.json, dict) and bool(self.json.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's messages (empty if missing)."""
        messages = self.json.get("messages") if isinstance(self.json, dict) else None
        return messages if isinstance(messages, list) else []

    @property
    def system(self) -> str:
        """The system prompt (OpenAI: the system messages; Anthropic: `system`)."""
        if self.provider == "anthropic":
            system = self.json.get("system", "") if isinstance(self.json, dict) else ""
            return system if isinstance(system, str) else "".join(_texts(system))
        return "\n".join(_content_text(m.get("content")) for m in self.messages if m.get("role") == "system")

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered."""
        tools = self.json.get("tools") if isinstance(self.json, dict) else None
        if not isinstance(tools, list):
            return []
        if self.provider == "openai":
            return [t.get("function", {}).get("name", "") for t in tools]
        return [t.get("name", "") for t in tools]

    @property
    def last_user_text(self) -> str:
        """The text of the last user message that has text: what the user wrote, without the
        `<instructions>` block a client adds after the history for prompt caching (Anthropic)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    content = [b for b in content if not str(b.get("text", "")).startswith("<instructions>")]
                text = _content_text(content)
                if text:
                    return text
        return ""

    @property
    def tool_results(self) -> list[FakeToolResult]:
        """The tool results at the end of the conversation (what the model is asked to react to)."""
        messages = self.messages
        if self.provider == "openai":
            results: list[FakeToolResult] = []
            # Instructions after the history (a system message at the end) do not answer the tools.
            while messages and messages[-1].get("role") in ("system", "developer"):
                messages = messages[:-1]
            for message in reversed(messages):
                if message.get("role") != "tool":
                    break
                text = _content_text(message.get("content"))
                results.append(FakeToolResult(str(message.get("tool_call_id")), text, False))
            return results[::-1]
        if not messages or not isinstance(messages[-1].get("content"), list):
            return []
        return [
            FakeToolResult(
                str(block.get("tool_use_id")), _content_text(block.get("content")), bool(block.get("is_error"))
            )
            for block in messages[-1]["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]


def _texts(blocks: Any) -> list[str]:
    return [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_texts(content))
    return ""


def default_answer(request: FakeLLMRequest) -> ResponseSpec:
    """Echo the user, or report the tool results when the conversation ends with them."""
    results = request.tool_results
    if results:
        return Reply("tool said: " + " | ".join(result.content for result in results))
    return Reply(f"echo: {request.last_user_text}")
