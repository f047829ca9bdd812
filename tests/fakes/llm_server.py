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
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

from aiohttp import web

from tests.fakes._llm_images import FakeImage
from tests.fakes._llm_input import Rejection, inspect
from tests.fakes._llm_responses import _error_response, _rejection_response, _respond, new_id, split_text
from tests.fakes._llm_specs import (
    CallTools,
    Fail,
    FakeLLMRequest,
    FakeToolResult,
    Handler,
    Hang,
    Malformed,
    Reply,
    ResponseSpec,
    default_answer,
)
from tests.fakes._llm_speech import FakeAudioRequest, SpeechMixin
from tests.fakes._llm_tokens import FakeUsage, PromptCache

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
    "default_answer",
    "new_id",
    "split_text",
]


# --------------------------------------------------------------------------------------------- server


class FakeLLMServer(SpeechMixin):
    """Both providers' completion endpoints on one port (see the module docstring)."""

    def __init__(self) -> None:
        self.latency: float = 0.0
        """Seconds each answer waits (asyncio.sleep in the server: concurrent requests overlap)."""
        self.cache_tokens: tuple[int, int] | None = None
        """If set, every answer reports these (read, written) prompt-cache tokens instead of what the
        prompt cache computed (OpenAI reports reads only, within `prompt_tokens`; Anthropic both,
        beside `input_tokens`): for tests of how usage is read."""
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
        self.on_answered: Callable[[FakeLLMRequest], None] | None = None
        """Run in the server thread once an answer was written (`first_text_at`/`last_text_at` set)."""
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
        if self.cache_tokens is not None:
            read, written = self.cache_tokens
            written = 0 if provider == "openai" else written
            uncached = request.usage.uncached_input if request.usage is not None else 1
            request.usage = FakeUsage(uncached + read + written, 0, read, written)
        response = await _respond(http, request, spec, self._pace(spec))
        if self.on_answered is not None:
            self.on_answered(request)
        return response

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
