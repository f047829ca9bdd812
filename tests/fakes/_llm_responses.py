"""Answers of the fake model server: error bodies, completions, and streamed events (paced)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes._llm_input import Rejection
from tests.fakes._llm_specs import CallTools, Fail, FakeLLMRequest, Malformed, Reply, ResponseSpec
from tests.fakes._llm_tokens import FakeUsage, tokens

_WORDS = re.compile(r"\S+\s*|\s+")


def split_text(text: str) -> list[str]:
    """Text as stream deltas: word by word, as models stream."""
    return _WORDS.findall(text) or [""]


def new_id(prefix: str) -> str:
    """An id in the provider's style (`call_...`, `toolu_...`, `chatcmpl-...`, `msg_...`)."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


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
    keepalive = getattr(spec, "keepalive_seconds", 0.0)
    if not request.stream:
        first, rate = pace
        wait = first + (written / rate if rate > 0 else 0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        request.first_text_at = request.last_text_at = time.monotonic()
        if request.provider == "openai":
            body = _openai_completion(model, text, calls, usage)
        else:
            body = _anthropic_message(model, text, calls, usage)
        if keepalive > 0:
            return await _kept_alive(http, keepalive, b" ", json.dumps(body).encode(), "application/json")
        return web.json_response(body)
    if request.provider == "openai":
        include_usage = bool((request.json.get("stream_options") or {}).get("include_usage"))
        events = _openai_events(model, text, calls, usage, include_usage)
    else:
        events = _anthropic_events(model, text, calls, usage)
    return await _stream(http, events, spec if isinstance(spec, Malformed) else None, pace, keepalive, request)


async def _kept_alive(
    http: web.Request, seconds: float, filler: bytes, body: bytes, content_type: str
) -> web.StreamResponse:
    """A response that starts at once, then sends `filler` every 0.2 s for `seconds`, then `body`."""
    response = web.StreamResponse(status=200, headers={"content-type": content_type})
    await response.prepare(http)
    if await _keep_alive(response, seconds, filler):
        await response.write(body)
        await response.write_eof()
    return response


async def _keep_alive(response: web.StreamResponse, seconds: float, filler: bytes) -> bool:
    """Send `filler` every 0.2 s for `seconds`; False if the client went away meanwhile."""
    until = time.monotonic() + seconds
    try:
        while time.monotonic() < until:
            await response.write(filler)
            await asyncio.sleep(min(0.2, max(0.0, until - time.monotonic())))
    except ConnectionResetError:  # the client gave up waiting, which is what a deadline is for
        return False
    return True


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
    http: web.Request,
    events: list[Event],
    broken: Malformed | None,
    pace: tuple[float, float],
    keepalive: float = 0.0,
    request: FakeLLMRequest | None = None,
) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    )
    await response.prepare(http)
    if keepalive > 0 and not await _keep_alive(response, keepalive, b": PROCESSING\n\n"):
        return response
    if broken is not None:
        # Keep the first event or two (deltas the client may already pass on), then break the stream.
        events = events[:2]
        if broken.kind == "json":
            events.append(('event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "del\n\n', 0))
    first_delay, rate = pace
    if broken is None and first_delay <= 0 and rate <= 0:
        # Unpaced: the whole answer in one write, as a server with it ready sends it (a write per event
        # would cost both ends a wake-up per event, which a benchmark of the client would count).
        await response.write("".join(chunk for chunk, _ in events).encode())
        if request is not None and any(chars is not None for _, chars in events):
            request.last_text_at = time.monotonic()
            request.first_text_at = request.first_text_at or request.last_text_at
        await response.write_eof()
        return response
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
        if chars is not None and request is not None:
            request.last_text_at = time.monotonic()
            request.first_text_at = request.first_text_at or request.last_text_at
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
