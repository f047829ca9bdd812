"""What both providers share: the SDK base class (constructor, a few clients used in turn so that
no one HTTP connection pool grows large, error translation, one request path plain or streamed)."""

from __future__ import annotations

import dataclasses
import ssl
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import aclosing, contextmanager
from types import ModuleType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx2

from llm._direct import DirectStreams, sdk_request_headers
from llm._errors import sdk_errors, translate_sdk_error, unavailable
from llm._sse import SseDecoder
from llm.base import DeltaCallback, LLMError, ModelReply, ModelRequest

__all__ = [
    "CLIENT_SHARDS",
    "SHAPE_ERRORS",
    "SHARD_LIMITS",
    "ClientShards",
    "SdkChatModel",
    "StreamAccumulator",
    "request_options",
]

CLIENT_SHARDS = 1
"""Clients made as concurrency calls for them. With httpx2 it was sixteen: its pool rescans all its
connections on every request it starts or finishes, so one pool serving 300 concurrent turns spent
~3 ms of CPU per request. The aiohttp transport's pool hands a connection over in constant time:
sixteen clients measured the same CPU per request as one at 300 in flight, so one it is."""


SHARD_LIMITS = httpx2.Limits(max_connections=1000, keepalive_expiry=5.0)
"""Up to 1,000 connections; an idle one is closed after 5 s, so the sockets and buffers of a burst
are not held for nothing (aiohttp keeps idle connections up to the limit until they expire)."""


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class ClientShards(Generic[C]):
    """Clients made by `factory` as concurrency calls for them: one per `per_client` requests in
    flight, up to `count`, handed out in turn. Making one costs ~25 ms, so a quiet assistant holds
    one, and a burst of 300 turns spreads over all of them."""

    def __init__(self, factory: Callable[[], C], count: int = CLIENT_SHARDS, per_client: int = 20) -> None:
        self._factory = factory
        self._count = count
        self._per_client = per_client
        self._clients: list[C] = []
        self._in_flight = 0
        self._turn = 0

    @contextmanager
    def use(self) -> Iterator[C]:
        """A client for one request, counted as in flight until the block ends."""
        self._in_flight += 1
        wanted = min(self._count, 1 + (self._in_flight - 1) // self._per_client)
        while len(self._clients) < wanted:
            self._clients.append(self._factory())
        self._turn = (self._turn + 1) % len(self._clients)
        try:
            yield self._clients[self._turn]
        finally:
            self._in_flight -= 1

    async def close(self) -> None:
        """Close every client made."""
        for client in self._clients:
            await client.close()


def request_options(timeout: float | None, request_timeout: float) -> dict[str, float]:
    """The SDK request options for a caller's cap on one request (see ChatModel.complete): a
    shorter timeout than the client's own, or nothing."""
    if timeout is None or timeout >= request_timeout:
        return {}
    return {"timeout": timeout}


SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError)
"""The SDKs build response objects without validating them, so a body of the wrong shape surfaces
as these when we read it; only our reading of a response is guarded by them."""


class StreamAccumulator(Protocol):
    """Assembles one streamed response from its server-sent events (llm._sse), read as JSON as they
    come: the SDKs would build a pydantic model per event at ~60 µs (~300 µs on a busy machine)."""

    done: bool
    """The stream said it is over (OpenAI's `[DONE]`): nothing after it is read."""

    def add(self, event: str, data: str) -> str:
        """Take one event (its name, "" for none, and its data); return its text delta ("" for none)."""
        ...

    def reply(self) -> ModelReply:
        """The assembled reply; LLMUnavailable if the stream was cut off."""
        ...


class SdkChatModel(ABC):
    """A ChatModel on a provider's official SDK. It never retries by itself (the SDK's retries are
    off): wrap it in `RetryingChatModel`. Raises LLMRejected / LLMUnavailable, never an SDK exception.

    A provider names its SDK module and client class, the endpoint and the types its responses are
    read as, and says how a request becomes a body and a response a reply; the rest is here.
    """

    provider: ClassVar[str]
    sdk: ClassVar[ModuleType]
    """The SDK module: its `DefaultAioHttpClient` and exception classes are used."""
    client_class: ClassVar[type[Any]]
    path: ClassVar[str]
    response_type: ClassVar[type[Any]]

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = "",
        temperature: float = 0.7,
        max_output_tokens: int = 1024,
        request_timeout_seconds: float = 60.0,
        stream: bool = True,
    ) -> None:
        self._model = model
        self._base_url = base_url
        self._temperature = temperature
        self._max_output_tokens = max_output_tokens
        self._stream = stream
        self._request_timeout = request_timeout_seconds
        # One TLS context for every client: each would otherwise load the CA bundle (~0.9 MB).
        tls = httpx2.create_ssl_context()
        self._clients = ClientShards(lambda: self._new_client(api_key, base_url, tls))
        self._direct: DirectStreams | None = None
        self._tls = tls

    def _new_client(self, api_key: str, base_url: str, tls: ssl.SSLContext) -> Any:
        return self.client_class(
            # Local servers need no key, but the SDKs insist on one: any placeholder will do.
            api_key=api_key or "not-needed",
            base_url=base_url or None,
            timeout=self._request_timeout,
            max_retries=0,  # our RetryingChatModel owns retries, within the turn's budget
            # aiohttp under the SDK's httpx2 interface: ~30% less CPU per request than httpx2's own
            # transport (bench/http_clients.py), the same timeouts and errors (the SDK maps them).
            http_client=self.sdk.DefaultAioHttpClient(verify=tls, limits=SHARD_LIMITS),
        )

    @abstractmethod
    def body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body of a request (without `stream`, which is added here)."""

    @abstractmethod
    def read(self, response: Any) -> ModelReply:
        """The reply in a (not streamed) response of `response_type`."""

    @abstractmethod
    def accumulator(self) -> StreamAccumulator:
        """A new accumulator for one streamed response."""

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask for the next reply; streams text to `request.on_delta` when streaming is on."""
        body = self.body(request)
        options = request_options(request.timeout, self._request_timeout)
        try:
            if self._stream:
                reply = await self._post_streaming(body, options, request.on_delta)
            else:
                reply = await self._post_once(body, options)
        except LLMError:
            raise
        except sdk_errors(self.sdk) as exc:
            raise translate_sdk_error(self.provider, self.sdk, exc) from exc
        # The readers name the model the provider was built with; a request may have asked another.
        return dataclasses.replace(reply, model=request.model) if request.model else reply

    async def _post_once(self, body: Mapping[str, Any], options: Mapping[str, Any]) -> ModelReply:
        """One request through the SDK's generic `post` (our JSON body as is), read into a reply.

        Not the SDKs' `create()`: that walks every message through a TypedDict transform, ~0.1 ms per
        message, which adds up to ~100 ms per request in a long conversation."""
        with self._clients.use() as client:
            response = await client.post(self.path, body=body, cast_to=self.response_type, options=options)
        try:
            return self.read(response)
        except SHAPE_ERRORS as exc:
            raise unavailable(self.provider, "malformed response") from exc

    async def _post_streaming(
        self, body: Mapping[str, Any], options: Mapping[str, Any], on_delta: DeltaCallback | None
    ) -> ModelReply:
        """A streamed request, sent as the SDK would send it but straight over aiohttp (llm._direct:
        a third of the CPU); its body is read here (llm._sse), and the text of all the events of one
        read goes to `on_delta` at once."""
        accumulator = self.accumulator()
        async with self._direct_streams().open({**body, "stream": True}, options.get("timeout")) as chunks:
            await self._read_events(chunks, accumulator, on_delta)
        try:
            return accumulator.reply()
        except SHAPE_ERRORS as exc:
            raise unavailable(self.provider, "malformed response") from exc

    def _direct_streams(self) -> DirectStreams:
        if self._direct is None:
            with self._clients.use() as client:  # the SDK's own URL and headers, read once
                url = str(client.base_url).rstrip("/") + self.path
                headers = sdk_request_headers(client)
            self._direct = DirectStreams(self.provider, url, headers, self._tls, self._request_timeout)
        return self._direct

    async def _read_events(
        self, chunks: AsyncGenerator[bytes, None], accumulator: StreamAccumulator, on_delta: DeltaCallback | None
    ) -> None:
        decoder = SseDecoder()
        async with aclosing(chunks):
            async for chunk in chunks:
                text = self._take(accumulator, decoder.feed(chunk))
                if text and on_delta is not None:
                    on_delta(text)
                if accumulator.done:
                    await DirectStreams.drain(chunks)
                    return
        self._take(accumulator, decoder.finish())

    def _take(self, accumulator: StreamAccumulator, events: list[tuple[str, str]]) -> str:
        """The events of one read into the accumulator; their text deltas joined."""
        try:
            return "".join([accumulator.add(event, data) for event, data in events])
        except SHAPE_ERRORS as exc:
            raise unavailable(self.provider, "malformed stream event") from exc

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        await self._clients.close()
        if self._direct is not None:
            await self._direct.close()
