"""How the providers call their SDKs: a few clients used in turn (so no one HTTP connection pool
grows large), and one request path for both, plain or streamed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

import httpx2

from llm._errors import unavailable
from llm.base import DeltaCallback, ModelReply

__all__ = [
    "CLIENT_SHARDS",
    "SHAPE_ERRORS",
    "SHARD_LIMITS",
    "ClientShards",
    "post_once",
    "post_streaming",
    "request_options",
]

CLIENT_SHARDS = 16
"""httpx2's pool rescans all its connections on every request it starts or finishes
(`_assign_requests_to_connections`), so one pool serving 300 concurrent turns spends ~3 ms of CPU
per request; sixteen pools of ~20 connections each spend a sixteenth of that."""


SHARD_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=16)
"""The SDKs keep up to 100 idle connections per client; after a burst that is 1,600 sockets and
their buffers held for nothing. Sixteen per shard still covers any steady load of one person."""


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


async def post_once(
    shards: ClientShards[Any],
    provider: str,
    path: str,
    body: Mapping[str, Any],
    options: Mapping[str, Any],
    cast_to: type[Any],
    read: Callable[[Any], ModelReply],
) -> ModelReply:
    """One request through the SDK's generic `post` (our JSON body as is), read into a reply.

    Not the SDKs' `create()`: that walks every message through a TypedDict transform, ~0.1 ms per
    message, which adds up to ~100 ms per request in a long conversation."""
    with shards.use() as client:
        response = await client.post(path, body=body, cast_to=cast_to, options=options)
    try:
        return read(response)
    except SHAPE_ERRORS as exc:
        raise unavailable(provider, "malformed response") from exc


async def post_streaming(
    shards: ClientShards[Any],
    provider: str,
    path: str,
    body: Mapping[str, Any],
    options: Mapping[str, Any],
    cast_to: type[Any],
    stream_cls: type[Any],
    add: Callable[[Any], str],
    on_delta: DeltaCallback | None,
) -> None:
    """A streamed request (see `post_once`): `add` takes each event and returns its text delta,
    which goes on to `on_delta`."""
    with shards.use() as client:
        stream = await client.post(
            path,
            body={**body, "stream": True},
            cast_to=cast_to,
            options=options,
            stream=True,
            stream_cls=stream_cls,
        )
        async with stream:
            async for event in stream:
                try:
                    text = add(event)
                except SHAPE_ERRORS as exc:
                    raise unavailable(provider, "malformed stream event") from exc
                if text and on_delta is not None:
                    on_delta(text)
