"""Two asyncio building blocks every layer shares: a lock per key, and waiting for an event or a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

__all__ = ["KeyedLocks", "run_unless_set", "wait_event"]

K = TypeVar("K", bound=Hashable)


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class KeyedLocks(Generic[K]):
    """`async with locks.hold(key):` serialises work per key; different keys never wait on each other.

    A key's lock is forgotten when nobody holds or waits for it, so many keys (conversations,
    chats) cost no memory once they are quiet.
    """

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold the lock of `key` for the body of the `async with`."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


async def wait_event(
    event: asyncio.Event, seconds: float, *, sleep: Callable[[float], Awaitable[None]] | None = None
) -> bool:
    """Wait until `event` is set or `seconds` have passed; True if the event came (anyio's
    `with move_on_after(seconds): await event.wait()`, followed by `event.is_set()`).

    Time is the loop's clock, or an injected `sleep` (a test's fake time): the timeout is then
    `sleep(seconds)` raced against the event, and the loser is cancelled. Cancellation of the
    caller propagates; nothing is left running either way. `asyncio.sleep` itself counts as the
    loop's clock: the race would cost two tasks per wait (a wait or two on every message).
    """
    if event.is_set():
        return True
    if sleep is None or sleep is asyncio.sleep:
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return event.is_set()
        return True
    sleeping = asyncio.ensure_future(sleep(seconds))
    waiting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([sleeping, waiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeping.cancel()
        waiting.cancel()
        await asyncio.wait([sleeping, waiting])
    return event.is_set()


async def run_unless_set(work: Coroutine[Any, Any, None], event: asyncio.Event, *, name: str) -> bool:
    """Run `work` as a task named `name` until it ends or `event` is set, whichever comes first;
    True if the work ended (its exception, if any, is raised), False if the event came first and
    the work was cancelled. Cancellation of the caller cancels the work too; nothing is left running."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(work, name=name)
    watch = loop.create_task(event.wait(), name=f"{name}-unless")
    try:
        await asyncio.wait([task, watch], return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        watch.cancel()
        await asyncio.wait([task, watch])
    if task.cancelled():
        return False
    task.result()
    return True
