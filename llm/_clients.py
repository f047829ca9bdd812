"""A few SDK clients used in turn, so that no one HTTP connection pool grows large."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["CLIENT_SHARDS", "ClientShards"]

CLIENT_SHARDS = 16
"""httpx2's pool rescans all its connections on every request it starts or finishes
(`_assign_requests_to_connections`), so one pool serving 300 concurrent turns spends ~3 ms of CPU
per request; sixteen pools of ~20 connections each spend a sixteenth of that."""


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class ClientShards(Generic[C]):
    """`count` clients made by `factory`, handed out round-robin."""

    def __init__(self, factory: Callable[[], C], count: int = CLIENT_SHARDS) -> None:
        self._clients = [factory() for _ in range(count)]
        self._turn = itertools.cycle(self._clients)

    def next(self) -> C:
        """The client for the next request."""
        return next(self._turn)

    async def close(self) -> None:
        """Close every client."""
        for client in self._clients:
            await client.close()
