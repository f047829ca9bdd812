"""CPU work on files (decoding images, reading documents) off the event loop, bounded in threads and time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["WorkTimedOut", "Workers"]

T = TypeVar("T")


class WorkTimedOut(Exception):
    """A piece of work did not finish within the timeout (it may still be running in its thread)."""


class Workers:
    """A few threads of our own for blocking work on files.

    `run` waits for a free thread (so at most `count` files are decoded at once: their memory is what a
    burst of photos costs), then for the work, at most `timeout_seconds`. A thread cannot be stopped, so
    work that outlives its timeout keeps its thread (and its place) until it ends: the work itself must
    be bounded (pixel, page and character caps), and the timeout is the user's answer in the meantime.
    """

    def __init__(self, count: int, timeout_seconds: float) -> None:
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="media-work")
        self._slots = asyncio.Semaphore(count)
        self._timeout = timeout_seconds

    async def run(self, work: Callable[[], T]) -> T:
        """The result of `work()`, run in a worker thread. Raises what it raises, or WorkTimedOut.
        Cancelling the caller does not stop the work; its thread is freed when it ends."""
        await self._slots.acquire()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _done: self._slots.release())
        # After a timeout or a cancellation nobody reads its outcome: retrieved here, asyncio logs nothing.
        future.add_done_callback(_discard)
        try:
            async with asyncio.timeout(self._timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            raise WorkTimedOut(f"work took longer than {self._timeout:g} s") from None

    def close(self) -> None:
        """Stop taking work; work already running ends in its own time."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _discard(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
