"""Asyncio building blocks every layer shares: a lock per key, waiting for an event or a timeout, and
blocking calls batched into worker-thread trips."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

__all__ = ["BatchedCalls", "KeyedLocks", "run_unless_set", "wait_event"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


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


_Call = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class BatchedCalls:
    """Blocking calls run in a worker thread, those made in the same turn of the event loop in one
    trip: a thread trip costs the loop more (an executor future, a wake-up, two callbacks) than a
    short write does, and under load many writes fall due together (a burst of turns recording their
    answers). The calls of one trip run one after another, each with its own result or exception.

    As with `asyncio.to_thread`, a caller cancelled while its call is under way stops waiting; the
    call itself runs to its end.
    """

    def __init__(self) -> None:
        # Per event loop (one object may serve several in turn, as in tests): a loop that closed with
        # calls not yet started must not hold up the next one's.
        self._pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Call]] = weakref.WeakKeyDictionary()

    async def call(self, function: Callable[[], T]) -> T:
        """`function()`, run in a worker thread with the other calls of this turn of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._start, loop)
        pending.append((function, future))
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        # Our own threads, not the loop's executor: run_in_executor would wake the loop a second time
        # per trip (to settle its own future) besides the one wake-up that settles the batch, and an
        # executor's future (a condition, a lock) is more than a trip needs.
        _TRIPS.put((batch, loop))
        if not _THREADS:
            _start_threads()


BATCH_THREADS = 4
"""Worker threads for batched calls: stores' writes, each waiting on its disk (fsync) more than on the GIL."""

_TRIPS: queue.SimpleQueue[tuple[list[_Call], asyncio.AbstractEventLoop] | None] = queue.SimpleQueue()
_THREADS: list[threading.Thread] = []


def _start_threads() -> None:
    for index in range(BATCH_THREADS):
        thread = threading.Thread(target=_work, name=f"batched_{index}", daemon=True)
        thread.start()
        _THREADS.append(thread)


def _work() -> None:
    while (trip := _TRIPS.get()) is not None:
        _run_batch(*trip)


@atexit.register
def _finish_trips() -> None:
    """At exit, the trips already queued run to their end (a write is never cut), then the threads end."""
    for _ in _THREADS:
        _TRIPS.put(None)
    for thread in _THREADS:
        thread.join()


def _run_batch(batch: list[_Call], loop: asyncio.AbstractEventLoop) -> None:
    outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
    for function, future in batch:
        try:
            outcomes.append((future, function(), None))
        except BaseException as exc:  # handed to its caller, whatever it is
            outcomes.append((future, None, exc))
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
        loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # its caller was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
