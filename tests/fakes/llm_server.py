"""A fake OpenAI-compatible and Anthropic completion server: real HTTP on 127.0.0.1 for the real SDKs.

    with FakeLLMServer() as llm:
        settings = LLMSettings(provider="openai", base_url=llm.openai_base_url, api_key="k")
        llm.script([CallTools([("time__now", {})]), Reply("It is noon.")])
        llm.latency = 0.05
        ...
        assert llm.requests[0].last_user_text == "what time is it?"

It runs aiohttp in a thread of its own with its own event loop, so sync code, async tests (whose loop it
never blocks), benchmarks and subprocesses can all use it. It answers like the real APIs (bodies,
streaming SSE events, error JSON), and rejects what they reject (400 with the provider's error shape,
401 without a key header). By default it answers "echo: <last user text>", or "tool said: <results>"
when the conversation ends with tool results. A scripted handler that raises makes the server answer
500 and makes `close()` raise, so a broken test fails loudly.

Usage is reported as each provider reports it, with prompt caching (_llm_tokens.py): OpenAI's
`prompt_tokens_details.cached_tokens` (automatic, 128-token steps from 1024), Anthropic's
`cache_creation_input_tokens` / `cache_read_input_tokens` (up to 4 `cache_control` breakpoints).
Image input is checked as each provider checks it and kept on the request (`request.images`);
`refuse_images` makes the model refuse it (_llm_images.py, _llm_input.py). Speech endpoints
(`/v1/audio/transcriptions`, `/v1/audio/speech`) are in _llm_speech.py. Streamed answers can be
paced like a real model: `first_token_delay` and `chars_per_second` (server-wide or per Reply).
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes._llm_images import FakeImage
from tests.fakes._llm_input import Rejection, inspect
from tests.fakes._llm_speech import FakeAudioRequest, SpeechMixin
from tests.fakes._llm_tokens import FakeUsage, PromptCache, tokens

__all__ = [
    "CallTools",
    "Fail",
    "FakeAudioRequest",
    "FakeImage",
    "FakeLLMRequest",
    "FakeLLMServer",
    "FakeToolResult",
    "FakeUsage",
    "Hang",
    "Malformed",
    "Reply",
    "ResponseSpec",
]


# ---------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with text (streamed as several deltas when the client streams). `first_token_delay` and
    `chars_per_second` override the server's pacing for this answer."""

    text: str
    first_token_delay: float | None = None
    chars_per_second: float | None = None


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
        """The text of the last user message that has text."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                text = _content_text(message.get("content"))
                if text:
                    return text
        return ""

    @property
    def tool_results(self) -> list[FakeToolResult]:
        """The tool results at the end of the conversation (what the model is asked to react to)."""
        messages = self.messages
        if self.provider == "openai":
            results: list[FakeToolResult] = []
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


# --------------------------------------------------------------------------------------------- server


class FakeLLMServer(SpeechMixin):
    """Both providers' completion endpoints on one port (see the module docstring)."""

    def __init__(self) -> None:
        self.latency: float = 0.0
        """Seconds each answer waits (asyncio.sleep in the server: concurrent requests overlap)."""
        self.first_token_delay: float = 0.0
        """Seconds from a request to its first text (streamed: the first delta; the preamble goes at once)."""
        self.chars_per_second: float = 0.0
        """Pace of streamed text after the first token (0: all at once). Non-streamed answers take as long."""
        self.refuse_images: bool | Collection[str] = False
        """True: the model refuses image input (400, as a text-only model); a collection: those models do."""
        self.anthropic_min_cache_tokens: int = 1024
        """The smallest prefix Anthropic caches (1024 for Sonnet/Opus-class models, 2048 for Haiku)."""
        self.clock: Callable[[], float] = time.monotonic
        """The prompt cache's clock (entries expire after 5 minutes unused; replace it to test expiry)."""
        self.prompt_cache = PromptCache(lambda: self.clock())
        """The prompt cache (`prompt_cache.enabled = False` for a run without caching; `clear()`)."""
        self.on_request: Callable[[FakeLLMRequest], None] | None = None
        """Run in the server thread as each request arrives, before it is answered."""
        self.requests: list[FakeLLMRequest] = []
        self.handler_errors: list[BaseException] = []
        self._script: collections.deque[ResponseSpec] = collections.deque()
        self._handler: Handler | None = None
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0
        self._init_speech()

    # lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> FakeLLMServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start serving; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="fake-llm-server", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake LLM server did not start")
        if self._startup_error is not None:
            raise RuntimeError("fake LLM server did not start") from self._startup_error

    def close(self) -> None:
        """Stop serving (hanging requests end); raise if a scripted handler failed."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._loop = None
        if self.handler_errors:
            raise AssertionError(f"fake LLM server handler failed: {self.handler_errors[0]!r}") from (
                self.handler_errors[0]
            )

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI SDK's `base_url` (ends in /v1)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The Anthropic SDK's `base_url` (the SDK adds /v1/messages)."""
        return self.base_url

    # programming --------------------------------------------------------------------------------

    def script(self, handler: Handler | Sequence[ResponseSpec] | ResponseSpec) -> None:
        """Set what the next requests get: a handler called per request (None from it means the default
        answer), or specs consumed one per request (then the default answer). Replaces any earlier script."""
        with self._lock:
            self._script.clear()
            self._handler = None
            if callable(handler):
                self._handler = handler
            elif isinstance(handler, Reply | CallTools | Fail | Hang | Malformed):
                self._script.append(handler)
            else:
                self._script.extend(handler)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[FakeLLMRequest]:
        """Block until `n` requests have arrived; return them. Raises TimeoutError."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"{len(self.requests)} of {n} requests arrived within {timeout} s")
            return list(self.requests)

    async def await_requests(self, n: int, timeout: float = 10.0) -> list[FakeLLMRequest]:
        """Wait, without blocking the running loop, until `n` requests have arrived. Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if len(self.requests) >= n:
                return list(self.requests)
            self._async_waiters.append((n, loop, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TimeoutError(f"{len(self.requests)} of {n} requests arrived within {timeout} s") from None
        return list(self.requests)

    # serving ------------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        try:
            await runner.setup()
            # A big backlog: a benchmark may open hundreds of connections at once.
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            self.port = runner.addresses[0][1]
        except BaseException as exc:
            self._startup_error = exc
            self._started.set()
            raise
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _arrive(self, request: FakeLLMRequest) -> None:
        with self._arrived:
            self.requests.append(request)
            count = len(self.requests)
            self._arrived.notify_all()
            ready = [w for w in self._async_waiters if count >= w[0]]
            self._async_waiters = [w for w in self._async_waiters if count < w[0]]
        for _, loop, future in ready:
            loop.call_soon_threadsafe(_resolve, future)

    def _next_spec(self, request: FakeLLMRequest) -> ResponseSpec:
        with self._lock:
            if self._script:
                return self._script.popleft()
            handler = self._handler
        if handler is not None:
            spec = handler(request)
            if spec is not None:
                return spec
        return default_answer(request)

    async def _openai(self, http: web.Request) -> web.StreamResponse:
        return await self._handle(http, "openai")

    async def _anthropic(self, http: web.Request) -> web.StreamResponse:
        return await self._handle(http, "anthropic")

    async def _handle(self, http: web.Request, provider: Literal["openai", "anthropic"]) -> web.StreamResponse:
        raw = await http.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        request = FakeLLMRequest(provider, http.path, {k.lower(): v for k, v in http.headers.items()}, body)
        status, problem = _check(request)
        rejection = Rejection(status, problem) if problem is not None else self._inspect(request)
        request.rejection = rejection.message if rejection is not None else None
        self._arrive(request)
        try:
            if self.on_request is not None:
                self.on_request(request)
            if rejection is not None:
                return _rejection_response(provider, rejection)
            spec = self._next_spec(request)
        except Exception as exc:  # a broken test handler: answer 500 now, fail the test at close()
            self.handler_errors.append(exc)
            return _error_response(provider, 500, f"fake server handler failed: {exc!r}")
        if isinstance(spec, Hang):
            assert self._stop is not None
            await self._stop.wait()
            return _error_response(provider, 503, "server shutting down")
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return await _respond(http, request, spec, self._pace(spec))

    def _inspect(self, request: FakeLLMRequest) -> Rejection | None:
        return inspect(
            request,
            refuse_images=self.refuse_images,
            cache=self.prompt_cache,
            min_cache_tokens=self.anthropic_min_cache_tokens,
        )

    def _pace(self, spec: ResponseSpec) -> tuple[float, float]:
        """(first token delay, characters per second) for an answer: the spec's, else the server's."""
        first = getattr(spec, "first_token_delay", None)
        rate = getattr(spec, "chars_per_second", None)
        return (
            self.first_token_delay if first is None else first,
            self.chars_per_second if rate is None else rate,
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_WORDS = re.compile(r"\S+\s*|\s+")


def split_text(text: str) -> list[str]:
    """Text as stream deltas: word by word, as models stream."""
    return _WORDS.findall(text) or [""]


def new_id(prefix: str) -> str:
    """An id in the provider's style (`call_...`, `toolu_...`, `chatcmpl-...`, `msg_...`)."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------------------------------- validation

_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def _check(request: FakeLLMRequest) -> tuple[int, str | None]:
    """(status, problem) for a request the real API would refuse; problem None means it is fine."""
    headers = request.headers
    if request.provider == "openai":
        if not headers.get("authorization", "").strip():
            return 401, "You didn't provide an API key. You need to provide your API key in an Authorization header."
        return 400, _check_openai(request.json)
    if not (headers.get("x-api-key") or headers.get("authorization")):
        return 401, "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "anthropic-version: header is required"
    return 400, _check_anthropic(request.json)


def _check_openai(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list):
        return f"Invalid type for 'messages': expected an array, but got {type(messages).__name__} instead."
    if not messages:
        return "[] is too short - 'messages'"
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict) or tool.get("type") != "function" or not tool.get("function", {}).get("name"):
            return "Missing required parameter: 'tools[0].function'."
    pending: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _OPENAI_ROLES:
            return f"Invalid value for 'messages[{index}].role'."
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                return (
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'."
                )
            pending.discard(call_id)
            continue
        if pending:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {sorted(pending)}"
            )
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if message.get("content") is None and not calls:
                return f"Invalid value for 'messages[{index}].content': expected a string, got null."
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
                    return f"Invalid type for 'messages[{index}].tool_calls[0].function.arguments': expected a string."
                pending.add(call.get("id"))
        elif not isinstance(message.get("content"), str | list):
            return f"Invalid type for 'messages[{index}].content'."
    if pending:
        return (
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {sorted(pending)}"
        )
    return None


def _check_anthropic(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 1):
        return "temperature: Input should be less than or equal to 1"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list"
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    uses_tools = False
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in {"user", "assistant"}:
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        role = message["role"]
        if index == 0 and role != "user":
            return 'messages: first message must use the "user" role'
        if index > 0 and messages[index - 1].get("role") == role:
            return 'messages: roles must alternate between "user" and "assistant"'
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{index}: all messages must have non-empty content"
        uses: set[str] = set()
        results: set[str] = set()
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and not str(block.get("text", "")).strip():
                return f"messages.{index}: text content blocks must contain non-whitespace text"
            if kind == "tool_use":
                uses_tools = True
                if role != "assistant" or not isinstance(block.get("input"), dict):
                    return f"messages.{index}: invalid tool_use block"
                uses.add(block.get("id"))
            elif kind == "tool_result":
                uses_tools = True
                if role != "user":
                    return f"messages.{index}: tool_result blocks are only allowed in user messages"
                results.add(block.get("tool_use_id"))
            elif kind not in {"text", "image", "tool_use", "tool_result"}:
                return f"messages.{index}.content: unknown block type {kind!r}"
        if results - previous_uses:
            return (
                f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{sorted(results - previous_uses)}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        if previous_uses - results:
            return (
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{sorted(previous_uses - results)}. Each `tool_use` block must have a corresponding `tool_result` "
                "block in the next message."
            )
        previous_uses = uses
    if previous_uses:
        return "messages: the final assistant message has `tool_use` blocks without `tool_result` blocks"
    if uses_tools and not body.get("tools"):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    return None


# ---------------------------------------------------------------------------------------- responses

_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "requests",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_body(provider: str, status: int, message: str) -> dict[str, Any]:
    if provider == "openai":
        kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _rejection_response(provider: str, rejection: Rejection) -> web.Response:
    body = _error_body(provider, rejection.status, rejection.message)
    if provider == "openai":
        body["error"]["param"] = rejection.param
        body["error"]["code"] = rejection.code or body["error"]["code"]
    return _error_response(provider, rejection.status, rejection.message, body=body)


def _error_response(
    provider: str, status: int, message: str, retry_after: float | None = None, body: Any = None
) -> web.Response:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    payload = _error_body(provider, status, message) if body is None else body
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


async def _respond(
    http: web.Request, request: FakeLLMRequest, spec: ResponseSpec, pace: tuple[float, float]
) -> web.StreamResponse:
    if isinstance(spec, Fail):
        return _error_response(request.provider, spec.status, "fake failure", spec.retry_after, spec.body)
    if isinstance(spec, Malformed) and not request.stream:
        return await _malformed_body(http, request.provider, spec)
    text, calls = _reply_parts(spec)
    model = str(request.json.get("model"))
    written = len(text) + sum(len(_arguments_json(args)) for _, _, args in calls)
    prompt = request.usage or FakeUsage(0, 0)
    usage = FakeUsage(prompt.input_tokens, max(1, tokens(written)), prompt.cache_read, prompt.cache_write)
    request.usage = usage
    if not request.stream:
        first, rate = pace
        wait = first + (written / rate if rate > 0 else 0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        if request.provider == "openai":
            return web.json_response(_openai_completion(model, text, calls, usage))
        return web.json_response(_anthropic_message(model, text, calls, usage))
    if request.provider == "openai":
        include_usage = bool((request.json.get("stream_options") or {}).get("include_usage"))
        events = _openai_events(model, text, calls, usage, include_usage)
    else:
        events = _anthropic_events(model, text, calls, usage)
    return await _stream(http, events, spec if isinstance(spec, Malformed) else None, pace)


def _reply_parts(spec: ResponseSpec) -> tuple[str, list[tuple[str, str, Mapping[str, Any] | str]]]:
    """(text, [(name, id-less placeholder, arguments)]) for Reply / CallTools (Malformed streams a reply)."""
    if isinstance(spec, CallTools):
        return spec.text, [(name, "", arguments) for name, arguments in spec.calls]
    if isinstance(spec, Reply):
        return spec.text, []
    return "this reply will break", []


def _arguments_json(arguments: Mapping[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _openai_usage(usage: FakeUsage) -> dict[str, Any]:
    """OpenAI's usage object: cached tokens are part of prompt_tokens."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _anthropic_usage(usage: FakeUsage, output_tokens: int | None = None) -> dict[str, Any]:
    """Anthropic's usage object: `input_tokens` excludes what was read from or written to the cache."""
    return {
        "input_tokens": usage.uncached_input,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": usage.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def _openai_completion(
    model: str, text: str, calls: list[tuple[str, str, Mapping[str, Any] | str]], usage: FakeUsage
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": _arguments_json(args)}}
            for name, _, args in calls
        ]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": _openai_usage(usage),
        "system_fingerprint": "fp_fake",
    }


# A streamed event: its SSE text and how many characters of the answer it carries (None: preamble,
# sent before the first token delay).
Event = tuple[str, int | None]


def _openai_events(
    model: str,
    text: str,
    calls: list[tuple[str, str, Mapping[str, Any] | str]],
    usage: FakeUsage,
    include_usage: bool,
) -> list[Event]:
    completion_id = new_id("chatcmpl-")
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        body |= {"system_fingerprint": "fp_fake", "choices": [choice]}
        if include_usage:
            body["usage"] = None  # as OpenAI sends it on every chunk but the last
        return f"data: {json.dumps(body)}\n\n"

    events: list[Event] = [(chunk({"role": "assistant", "content": "", "refusal": None}), None)]
    if text:
        events += [(chunk({"content": piece}), len(piece)) for piece in split_text(text)]
    for index, (name, _, arguments) in enumerate(calls):
        start = {"index": index, "id": new_id("call_"), "type": "function", "function": {"name": name, "arguments": ""}}
        events.append((chunk({"tool_calls": [start]}), 0))
        encoded = _arguments_json(arguments)
        half = len(encoded) // 2
        for piece in (encoded[:half], encoded[half:]):
            if piece:
                events.append((chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}), len(piece)))
    events.append((chunk({}, "tool_calls" if calls else "stop"), 0))
    if include_usage:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        body |= {"system_fingerprint": "fp_fake", "choices": [], "usage": _openai_usage(usage)}
        events.append((f"data: {json.dumps(body)}\n\n", 0))
    events.append(("data: [DONE]\n\n", 0))
    return events


def _anthropic_input(arguments: Mapping[str, Any] | str) -> Any:
    if not isinstance(arguments, str):
        return dict(arguments)
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # not what the real API sends, but the closest a non-streamed reply can get


def _anthropic_message(
    model: str, text: str, calls: list[tuple[str, str, Mapping[str, Any] | str]], usage: FakeUsage
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": _anthropic_input(args)}
        for name, _, args in calls
    ]
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(usage),
    }


def _anthropic_events(
    model: str, text: str, calls: list[tuple[str, str, Mapping[str, Any] | str]], usage: FakeUsage
) -> list[Event]:
    def event(kind: str, **data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    start: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(usage, output_tokens=1),
    }
    events: list[Event] = [(event("message_start", message=start), None), (event("ping"), None)]
    index = 0
    if text:
        events.append((event("content_block_start", index=index, content_block={"type": "text", "text": ""}), 0))
        for piece in split_text(text):
            delta = {"type": "text_delta", "text": piece}
            events.append((event("content_block_delta", index=index, delta=delta), len(piece)))
        events.append((event("content_block_stop", index=index), 0))
        index += 1
    for name, _, arguments in calls:
        block = {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": {}}
        events.append((event("content_block_start", index=index, content_block=block), 0))
        encoded = _arguments_json(arguments)
        half = len(encoded) // 2
        for piece in (encoded[:half], encoded[half:]):
            if piece:
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append((event("content_block_delta", index=index, delta=delta), len(piece)))
        events.append((event("content_block_stop", index=index), 0))
        index += 1
    final: dict[str, Any] = {"stop_reason": "tool_use" if calls else "end_turn", "stop_sequence": None}
    cumulative = {k: v for k, v in _anthropic_usage(usage).items() if k not in ("cache_creation", "service_tier")}
    events.append((event("message_delta", delta=final, usage=cumulative), 0))
    events.append((event("message_stop"), 0))
    return events


async def _stream(
    http: web.Request, events: list[Event], broken: Malformed | None, pace: tuple[float, float]
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    )
    await response.prepare(http)
    if broken is not None:
        # Keep the first event or two (deltas the client may already pass on), then break the stream.
        events = events[:2]
        if broken.kind == "json":
            events.append(('event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "del\n\n', 0))
    first_delay, rate = pace
    begun = time.monotonic()
    written = 0
    for chunk, chars in events:
        if chars is not None and (first_delay > 0 or rate > 0):
            # Pace against the clock from the start, so sleeping overheads do not add up.
            due = begun + first_delay + (written / rate if rate > 0 else 0.0)
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            written += chars
        await response.write(chunk.encode())
    if broken is not None and broken.kind == "disconnect":
        assert http.transport is not None
        http.transport.abort()
        return response
    await response.write_eof()
    return response


async def _malformed_body(http: web.Request, provider: str, spec: Malformed) -> web.StreamResponse:
    if spec.kind == "shape":
        body = {"object": "chat.completion"} if provider == "openai" else {"type": "message", "role": "assistant"}
        return web.json_response(body)
    full = b'{"id": "broken", "choices": [{"index": 0, "message": {"role": "assistant", "content": "tru'
    if spec.kind == "json":
        return web.Response(status=200, body=full, content_type="application/json")
    # disconnect: promise a longer body than is sent, then drop the connection.
    response = web.StreamResponse(status=200, headers={"content-type": "application/json"})
    response.content_length = len(full) * 2
    await response.prepare(http)
    await response.write(full)
    assert http.transport is not None
    http.transport.abort()
    return response
