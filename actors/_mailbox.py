"""A bounded, non-blocking mailbox: `put` never waits, `get` waits only when empty."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["ActorStopped", "Mailbox", "MailboxFull"]


class ActorStopped(Exception):
    """The actor is stopping or stopped; the message was not taken (or was never handled)."""

    def __init__(self, actor: str) -> None:
        super().__init__(f"actor {actor} is stopped")
        self.actor = actor


class MailboxFull(Exception):
    """The actor's mailbox is full; the message was not taken. The caller answers "busy"."""

    def __init__(self, actor: str, capacity: int) -> None:
        super().__init__(f"mailbox of {actor} is full ({capacity} messages)")
        self.actor = actor
        self.capacity = capacity


class Mailbox:
    """FIFO of envelopes with a capacity. One consumer (the actor's task), any number of producers.

    A list with one waiter future instead of asyncio.Queue: `put` is a plain append, and `get`
    does not suspend while items are waiting, which roughly triples throughput for bursts. A list,
    not a deque: a mailbox mostly holds nothing or one message, and an empty deque still holds a
    624-byte block (per live conversation); taking from the front of a few items costs nothing.
    """

    __slots__ = ("_capacity", "_closed", "_items", "_name", "_waiter")

    def __init__(self, name: str, capacity: int) -> None:
        self._name = name
        self._capacity = capacity
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def name(self) -> str:
        """Whose mailbox (in errors)."""
        return self._name

    @property
    def closed(self) -> bool:
        """True once `close` was called: no producer can add anything any more."""
        return self._closed

    def put(self, item: Any, *, force: bool = False) -> None:
        """Add `item`. Raises ActorStopped when closed and MailboxFull at capacity (unless `force`,
        used for control messages such as stop, which must get in whatever the load)."""
        if self._closed:
            raise ActorStopped(self._name)
        if not force and len(self._items) >= self._capacity:
            raise MailboxFull(self._name, self._capacity)
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> Any:
        """Take the oldest item, waiting while there is none."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def push_front(self, item: Any) -> None:
        """Put `item` back at the head (a message to retry after a restart)."""
        self._items.insert(0, item)

    def close(self) -> None:
        """Refuse further items; those already in stay to be taken or drained."""
        self._closed = True

    def drain(self) -> list[Any]:
        """Remove and return whatever is still waiting, oldest first."""
        left, self._items = self._items, []
        return left
