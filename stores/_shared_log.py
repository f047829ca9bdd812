"""A JSONL file that several store objects, even in several processes, keep and read together.

Each line is a change; folding the lines in order gives the state (a dict of facts, reminders,
counters). Every change runs in one worker thread under an exclusive `flock` on
`<file>.lock`: it first folds the lines that others appended since it last looked (a changed
inode means another object compacted the file: it reads it whole again), then runs the caller's
step on the state, appends the step's lines and `fsync`s before returning. So a check and the
write that depends on it (the claim of a reminder's firing, a per-chat limit) are one atomic step
for every object that shares the file, and each reads only what is new. A read of a file that
has not changed since (same inode and size) needs neither the thread nor the lock (`read`).

When the file holds many more lines than the state needs, it is compacted: the state's snapshot
is written to `<file>.compact`, `fsync`ed, and renamed over the file. A torn last line (a crash
during an append, which therefore never returned) is cut off by the next operation; an unreadable
line elsewhere is skipped with an error log line.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import aiofiles.os
import structlog

from stores._fs import STORE_CALLS, fsync_directory, truncate_durably, write_all
from stores._records import encode_json
from stores.base import StoreError

__all__ = ["Line", "SharedLog", "make_directory"]

log = structlog.get_logger(__name__)

S = TypeVar("S")
T = TypeVar("T")
Line = dict[str, Any]
"""One change, as JSON."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


async def make_directory(directory: Path) -> None:
    """Create `directory` (and its parents) if needed; StoreError if that fails."""
    try:
        await aiofiles.os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory {str(directory)!r}: {exc.strerror}") from exc


class SharedLog(ABC, Generic[S]):
    """The state of `path`, read and changed through `transact` and `read` (see the module).

    `compact_after` is the fewest lines at which compaction is considered; it happens once the
    file has at least twice as many lines as the last snapshot had.
    """

    def __init__(self, path: Path, *, compact_after: int = 256) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._compact_after = compact_after
        # The state and what of the file it reflects; touched only under _mutex, in a worker thread.
        self._mutex = threading.Lock()
        self._state = self.empty()
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._lines = 0
        self._compact_at = compact_after

    @abstractmethod
    def empty(self) -> S:
        """The state of an empty file."""

    @abstractmethod
    def fold(self, state: S, line: Line) -> None:
        """Apply one line to `state`. Raise KeyError, TypeError or ValueError, before changing
        anything, for a line that is not a valid change."""

    @abstractmethod
    def snapshot(self, state: S) -> Iterator[Line]:
        """Lines that fold into `state` (or into what of it must be kept) from `empty()`, made one at
        a time as compaction writes them: a month's usage has a line per user and day."""

    async def transact(self, step: Callable[[S], tuple[Sequence[Line], T]]) -> T:
        """Run `step(state)` under the lock; durably append the lines it returns; return its result.

        `step` runs in a worker thread and must not change the state (its lines do, once written);
        an exception from it writes nothing and propagates. StoreError if the disk fails.
        The operation finishes even if the caller is cancelled meanwhile.
        """
        try:
            return await STORE_CALLS.call(functools.partial(self._transact, step))
        except OSError as exc:
            raise StoreError(f"cannot use {self.path.name}: {exc.strerror or exc}") from exc

    async def read(self, view: Callable[[S], T]) -> T:
        """`view(state)` of the current state (it must not change it).

        When nothing was written since this object last looked (the file has the size and the inode
        it folded, or is still absent), the view runs at once on the caller's thread: the state is
        current as of that check, and a turn's reads (facts, zone, model, usage) cost no trip to a
        worker thread. Otherwise, or while a worker thread holds the state, as `transact` does.
        """
        fresh, result = self._read_in_place(view)
        if fresh:
            return cast(T, result)
        return await self.transact(lambda state: ((), view(state)))

    def _read_in_place(self, view: Callable[[S], T]) -> tuple[bool, T | None]:
        if not self._mutex.acquire(blocking=False):
            return False, None
        try:
            try:
                status = os.stat(self.path)
            except FileNotFoundError:
                # Never seen (identity None at offset 0: the state is still empty()) and still absent.
                fresh = self._identity is None and self._offset == 0
            except OSError:
                return False, None
            else:
                identity = (status.st_dev, status.st_ino)
                fresh = identity == self._identity and status.st_size == self._offset
            return (True, view(self._state)) if fresh else (False, None)
        finally:
            self._mutex.release()

    def _transact(self, step: Callable[[S], tuple[Sequence[Line], T]]) -> T:
        with self._mutex:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._refresh()
                lines, result = step(self._state)
                if lines:
                    self._append(lines)
                return result
            finally:
                os.close(fd)  # closing releases the flock

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self._state = self.empty()
        self._identity = identity
        self._offset = 0
        self._lines = 0

    def _refresh(self) -> None:
        """Fold what was appended since we last looked (all of it if the file was replaced)."""
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            if self._identity is not None or self._offset:
                self._reset(None)
            return
        with file:
            status = os.fstat(file.fileno())
            identity = (status.st_dev, status.st_ino)
            if identity != self._identity or status.st_size < self._offset:
                self._reset(identity)
            if status.st_size == self._offset:
                return
            file.seek(self._offset)
            data = file.read()
        consumed = self._fold_all(data, self._offset)
        if consumed < len(data):
            # We hold the lock, so nobody is writing: an unfinished line is the trace of a crash.
            log.warning("store_torn_tail_skipped", file=self.path.name, offset=self._offset + consumed)
            truncate_durably(self.path, self._offset + consumed)
        self._offset += consumed

    def _fold_all(self, data: bytes, base: int) -> int:
        """Fold every complete line of `data`; the number of bytes they take."""
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            try:
                line = json.loads(data[start:end])
                if not isinstance(line, dict):
                    raise TypeError("not an object")
                self.fold(self._state, line)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("store_line_unreadable", file=self.path.name, offset=base + start, error=str(exc))
            self._lines += 1
            start = end + 1
        return start

    def _append(self, lines: Sequence[Line]) -> None:
        data = b"".join(encode_json(line) + b"\n" for line in lines)
        new_file = self._identity is None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _CLOEXEC, 0o600)
            try:
                write_all(fd, data, sync=True)
                status = os.fstat(fd)
            finally:
                os.close(fd)
            if new_file:
                fsync_directory(self.path.parent)  # or the new file may vanish with a power loss
        except BaseException:
            # Part of a line may be on disk: the next operation reads the file afresh and cuts it off.
            self._identity = None
            raise
        self._identity = (status.st_dev, status.st_ino)
        self._fold_all(data, self._offset)
        self._offset += len(data)
        if self._lines >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        buffer, lines = bytearray(), 0
        for line in self.snapshot(self._state):  # not all lines at once: a burst's peak would stay
            buffer += encode_json(line) + b"\n"
            lines += 1
        data = bytes(buffer)
        del buffer
        temporary = self.path.with_name(self.path.name + ".compact")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, 0o600)
            try:
                write_all(fd, data, sync=True)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            fsync_directory(self.path.parent)
            status = os.stat(self.path)
        except OSError as exc:
            # The log itself is intact and the operation done; compaction is tried again later.
            log.warning("store_compaction_failed", file=self.path.name, error=exc.strerror or str(exc))
            self._compact_at = self._lines + self._compact_after
            return
        self._reset((status.st_dev, status.st_ino))
        self._fold_all(data, 0)
        self._offset = len(data)
        self._compact_at = max(self._compact_after, 2 * lines)
