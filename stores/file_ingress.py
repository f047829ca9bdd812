"""The file ingress log: one append-only JSONL file of updates and their `done` marks.

Lines are `{"u": <update>}` (held) and `{"d": <update_id>}` (answered). `append` is one write
and one `fsync`; `done` is one write without `fsync` (a lost mark only means a replay, which the
conversation actor recognises). The pending set lives in memory and is rebuilt from the file on
`open`.

The file is compacted - rewritten with just the pending updates to a temporary file, `fsync`ed,
renamed over the log, and the directory `fsync`ed - when nothing is pending and it has grown past
`compact_idle_bytes`, or when it is past `compact_max_bytes` and mostly answered updates. So it
stays small across months of operation, and a crash at any point leaves the old or the new file.

Damage: a torn or corrupt last line is cut off with a warning; a corrupt line elsewhere is
skipped with an error log line (the log is shared by every chat, so one bad line must not cost
the others their pending updates).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from stores._fs import STORE_CALLS, fsync_directory, truncate_durably, write_all
from stores._records import encode_json, encode_updates
from stores.base import IngressLog, StoreError

__all__ = ["INGRESS_FILE", "FileIngressLog"]

log = structlog.get_logger(__name__)

INGRESS_FILE = Path("_ingress") / "updates.jsonl"
"""Where the log lives, relative to the conversation directory. Conversation files are named
`<slug>.<digest>.jsonl`; a directory `_ingress` can never be one of them."""


class FileIngressLog(IngressLog):
    """The ingress log in the file `path` (its directory is created on `open`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compact_idle_bytes: int = 64 * 1024,
        compact_max_bytes: int = 4 * 1024 * 1024,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self._read_only = read_only
        self._closed = False
        self._compact_idle_bytes = compact_idle_bytes
        self._compact_max_bytes = compact_max_bytes
        self._pending: dict[int, bytes] = {}
        self._fd: int | None = None
        self._size = 0
        self._torn = False
        """A write failed part-way: bytes past `_size` may be on disk and are cut off first."""
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        """Bytes in the log file now (for tests and metrics)."""
        return self._size

    async def open(self) -> None:
        """Create the directory, replay the file into the pending set, open it for appending."""
        if self._fd is not None:
            return
        self._closed = False
        if self._read_only:
            try:
                self._pending, self._size, _ = await asyncio.to_thread(self._replay_sync, repair=False)
            except OSError as exc:
                raise StoreError(f"cannot read the ingress log {str(self.path)!r}: {exc.strerror}") from exc
            return
        try:
            pending, size, torn = await asyncio.to_thread(self._replay_sync)
            if torn:
                log.warning("ingress_torn_tail_skipped", file=str(self.path), offset=size, bytes=torn)
                await asyncio.to_thread(truncate_durably, self.path, size)
            self._fd = await asyncio.to_thread(_open_append, self.path)
        except OSError as exc:
            raise StoreError(f"cannot open the ingress log {str(self.path)!r}: {exc.strerror}") from exc
        self._pending = pending
        self._size = size

    async def close(self) -> None:
        """Close the file. Safe to call twice."""
        async with self._lock:
            fd, self._fd, self._closed = self._fd, None, True
            if fd is not None:
                await asyncio.to_thread(os.close, fd)

    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        """Write the updates not already held as one write, `fsync`, then return."""
        encoded = encode_updates(updates)
        async with self._lock:
            fresh: dict[int, bytes] = {}
            for update_id, data in encoded:
                if update_id not in self._pending and update_id not in fresh:
                    fresh[update_id] = data
            if not fresh:
                return
            lines = b"".join(b'{"u":' + data + b"}\n" for data in fresh.values())
            await self._write(lines, sync=True)
            self._pending.update(fresh)

    async def done(self, update_id: int) -> None:
        """Mark the update answered (not `fsync`ed); an unknown id is ignored."""
        async with self._lock:
            if self._pending.pop(update_id, None) is None:
                return
            await self._write(b'{"d":' + encode_json(update_id) + b"}\n", sync=False)
            await self._compact_if_due()

    async def pending(self) -> list[dict[str, Any]]:
        """Held updates in `update_id` order, as fresh copies."""
        return [json.loads(self._pending[key]) for key in sorted(self._pending)]

    async def _write(self, data: bytes, *, sync: bool) -> None:
        if self._fd is None and not self._closed and not self._read_only:
            # A failed compaction whose reopen failed too left no descriptor: try again now,
            # so one bad moment of the disk does not close the log for good.
            try:
                self._fd, self._size = await asyncio.to_thread(_reopen, self.path, None)
            except OSError as exc:
                raise StoreError(f"cannot reopen the ingress log: {exc.strerror}") from exc
        fd = self._fd
        if fd is None:
            raise StoreError("the ingress log is not open")
        try:
            if self._torn:
                # An earlier write failed part-way: cut its bytes off first, or this line would
                # be glued to them and skipped as corrupt on the next start.
                await asyncio.to_thread(truncate_durably, self.path, self._size)
                self._torn = False
            if sync:
                await STORE_CALLS.call(functools.partial(write_all, fd, data, sync=True))
            else:
                # A short append with no fsync is a copy into the page cache (microseconds); the
                # trip to a worker thread and back would cost the event loop ten times as much.
                write_all(fd, data, sync=False)
        except OSError as exc:
            self._torn = True
            raise StoreError(f"cannot write the ingress log: {exc.strerror}") from exc
        self._size += len(data)

    async def _compact_if_due(self) -> None:
        idle = not self._pending and self._size >= self._compact_idle_bytes
        # What is live is summed only for a big file: at every mark it cost O(pending), quadratic
        # over a burst of thousands of updates.
        bloated = self._size >= self._compact_max_bytes and self._size > 4 * sum(
            len(data) + 7 for data in self._pending.values()
        )
        if not (idle or bloated):
            return
        lines = b"".join(b'{"u":' + data + b"}\n" for data in self._pending.values())
        old_fd, self._fd = self._fd, None
        try:
            new_fd = await asyncio.to_thread(_rewrite, self.path, lines)
        except OSError as exc:
            # Whether or not the rename happened, the file at `path` is a sound log: reopen it.
            # If even that fails, the next write tries again (see `_write`).
            try:
                self._fd, self._size = await asyncio.to_thread(_reopen, self.path, old_fd)
            except OSError:
                log.error("ingress_reopen_failed", file=str(self.path))
            raise StoreError(f"cannot compact the ingress log: {exc.strerror}") from exc
        if old_fd is not None:
            await asyncio.to_thread(os.close, old_fd)
        self._fd = new_fd
        log.debug("ingress_compacted", bytes_before=self._size, bytes_after=len(lines), pending=len(self._pending))
        self._size = len(lines)

    def _replay_sync(self, *, repair: bool = True) -> tuple[dict[int, bytes], int, int]:
        """Read the log: the pending updates, the length of the sound prefix, the torn tail's length.
        With `repair`, a crashed compaction's temporary file is removed first."""
        if repair:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporary(self.path)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}, 0, 0
        pending: dict[int, bytes] = {}
        complete = data.split(b"\n")[:-1]
        good_length = 0
        for number, line in enumerate(complete, start=1):
            entry = _parse_entry(line)
            if entry is None:
                if number == len(complete):
                    break  # a corrupt last line is cut off like a torn one
                log.error("ingress_line_skipped", file=str(self.path), line=number)
            else:
                update_id, raw = entry
                if raw is not None:
                    pending[update_id] = raw
                else:
                    pending.pop(update_id, None)
            good_length += len(line) + 1
        return pending, good_length, len(data) - good_length


def _parse_entry(line: bytes) -> tuple[int, bytes | None] | None:
    """`(update_id, update)` for a held update, `(update_id, None)` for a done mark, None if corrupt."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        return None
    if isinstance(update := value.get("u"), dict):
        update_id = update.get("update_id")
        if isinstance(update_id, int) and not isinstance(update_id, bool):
            return update_id, encode_json(update)
    done = value.get("d")
    if isinstance(done, int) and not isinstance(done, bool):
        return done, None
    return None


def _open_append(path: Path) -> int:
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    if not existed:
        fsync_directory(path.parent)
    return fd


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".compacting")


def _remove_stale_temporary(path: Path) -> None:
    # A compaction that crashed before its rename leaves this; the log itself is intact.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_temporary(path))


def _rewrite(path: Path, data: bytes) -> int:
    """Replace the log by `data` crash-safely and return a new append descriptor."""
    temporary = _temporary(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        write_all(fd, data, sync=True)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)
    return _open_append(path)


def _reopen(path: Path, old_fd: int | None) -> tuple[int, int]:
    if old_fd is not None:
        with contextlib.suppress(OSError):
            os.close(old_fd)
    fd = _open_append(path)
    return fd, os.fstat(fd).st_size
