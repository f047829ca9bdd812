"""Group commit: appends to a `SharedLog` that arrive together are written together, with one `fsync`.

A shared log serialises its operations (a mutex and a `flock`), each in a worker thread, and each
write waits for its `fsync`. When hundreds of turns end at once (every model call adds its usage),
one write after another holds every worker thread of the loop's executor waiting on the mutex,
and the conversation stores' own writes wait behind them. Here, the first append of a batch starts
one writer task; appends that arrive before that writer gets its turn join the batch; each caller
returns once the batch is durable (or gets its StoreError).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stores._shared_log import Line, SharedLog
from stores.base import StoreError

__all__ = ["GroupCommit"]

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Batch:
    lines: list[Line]
    written: asyncio.Future[None]


class GroupCommit(Generic[K]):
    """Appends to the log of each key (`log_of(key)`), batched as the module docstring says."""

    def __init__(self, log_of: Callable[[K], SharedLog[Any]]) -> None:
        self._log_of = log_of
        self._open: dict[K, _Batch] = {}  # per key, the batch still taking lines
        self._locks: dict[K, asyncio.Lock] = {}
        self._writers: set[asyncio.Task[None]] = set()

    async def append(self, key: K, line: Line) -> None:
        """Append `line` to the log of `key`; returns once it is durable. StoreError if the write
        fails. A cancelled caller's line is still written (with its batch)."""
        batch = self._open.get(key)
        if batch is None:
            written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            # Retrieved here, so a failure nobody waits for any more (all cancelled) is not reported
            # as "never retrieved"; the waiters still get it.
            written.add_done_callback(lambda future: future.cancelled() or future.exception())
            batch = self._open[key] = _Batch([], written)
            writer = asyncio.create_task(self._write(key, batch), name=f"group-commit-{key}")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        batch.lines.append(line)
        await asyncio.shield(batch.written)

    async def _write(self, key: K, batch: _Batch) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # From here on, new lines start the next batch (whose writer waits for this lock).
            del self._open[key]
            try:
                await self._log_of(key).transact(lambda state: (batch.lines, None))
            except StoreError as exc:
                batch.written.set_exception(exc)
            except BaseException:
                batch.written.set_exception(StoreError("the write was interrupted (the store is closing)"))
                raise
            else:
                batch.written.set_result(None)

    async def flush(self) -> None:
        """Wait until every batch started so far is written (or failed)."""
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)
