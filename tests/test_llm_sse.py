"""llm._sse: server-sent events split from the bytes of each read, however the reads cut them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from llm import LLMUnavailable, UserRecord
from llm._sse import SseDecoder
from llm.anthropic_provider import AnthropicChatModel
from llm.base import ModelRequest
from llm.openai_provider import OpenAIChatModel

USER = [UserRecord(text="hello")]


def test_all_the_events_of_one_read_come_together() -> None:
    decoder = SseDecoder()
    events = decoder.feed(b'data: {"a": 1}\n\nevent: ping\ndata: {}\n\n: a comment\ndata: [DONE]\n\n')
    assert events == [("", '{"a": 1}'), ("ping", "{}"), ("", "[DONE]")]
    assert decoder.finish() == []


def test_an_event_cut_across_reads_comes_whole_once_its_blank_line_arrives() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: message_delta\r") == []  # its LF may be in the next read
    assert decoder.feed(b'\ndata: {"text": "caf\xc3') == []  # a character cut in two as well
    assert decoder.feed(b'\xa9"}\r\n') == []
    assert decoder.feed(b"\r\n") == [("message_delta", '{"text": "café"}')]


def test_data_lines_join_with_newlines_and_cr_alone_ends_a_line() -> None:
    decoder = SseDecoder()
    # The last CR waits for the next read (or the end): it may be the first half of a CRLF.
    assert decoder.feed(b"data:one\rdata: two\r\r") == []
    assert decoder.feed(b"data: three\r\r") == [("", "one\ntwo")]
    assert decoder.finish() == [("", "three")]


def test_an_event_without_its_blank_line_at_the_end_is_dropped() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: complete\n\ndata: cut") == [("", "complete")]
    assert decoder.finish() == []


# Streams the fake model server does not send, from a bare SSE server on 127.0.0.1.


@asynccontextmanager
async def sse_server(body: bytes, hold_open: bool = False) -> AsyncIterator[str]:
    """A server answering every POST with `body` as an event stream, then ending the body (or, with
    `hold_open`, keeping it open until the server stops); yields its base URL."""
    stopping = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        if hold_open:
            await stopping.wait()
            return response  # the client has gone: nothing more can be written
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stopping.set()
        await runner.cleanup()


def _chunk(**fields: object) -> bytes:
    return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", **fields}).encode() + b"\n\n"


async def test_an_openai_stream_is_over_at_done_even_if_the_body_is_not() -> None:
    body = _chunk(choices=[{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]) + b"data: [DONE]\n\n"
    async with sse_server(body, hold_open=True) as url:
        model = OpenAIChatModel(model="m", api_key="k", base_url=url + "/v1", request_timeout_seconds=10)
        started = time.monotonic()
        reply = await model.complete(ModelRequest("", USER))
        took = time.monotonic() - started
        await model.aclose()
    assert reply.text == "hi"
    assert took < 2.0  # the rest of the body was read for 0.1 s only


async def test_an_openai_error_inside_a_stream_is_unavailable() -> None:
    body = _chunk(choices=[{"index": 0, "delta": {"content": "hi"}}]) + b'data: {"error": {"message": "boom"}}\n\n'
    async with sse_server(body) as url:
        model = OpenAIChatModel(model="m", api_key="k", base_url=url + "/v1")
        with pytest.raises(LLMUnavailable, match="openai: error during streaming"):
            await model.complete(ModelRequest("", USER))
        await model.aclose()


async def test_an_anthropic_error_event_is_unavailable() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 0}}}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body = (
        f"event: message_start\ndata: {json.dumps(start)}\n\nevent: ping\ndata: {{}}\n\n"
        f"event: error\ndata: {json.dumps(error)}\n\n"
    ).encode()
    async with sse_server(body) as url:
        model = AnthropicChatModel(model="m", api_key="k", base_url=url)
        with pytest.raises(LLMUnavailable, match="anthropic: error event during streaming"):
            await model.complete(ModelRequest("", USER))
        await model.aclose()
