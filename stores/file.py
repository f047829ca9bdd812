"""The file conversation store: one append-only JSONL file per conversation.

Guarantees, given that one process (one store object) owns the directory:

- `append` returns after the new lines are written and `fsync`ed (and, for a conversation's
  first record, after the directory entry is `fsync`ed too). It writes only the new lines: its
  cost does not depend on the history's length.
- A `seq` not above the last stored one raises ConflictError. The last `seq` is known once the
  conversation was loaded or appended to in this process; before that it is read from the file's
  last line (a read of one line, not of the history).
- A torn or corrupt last line (power loss during an append that therefore never returned) is
  skipped with a warning and cut off, so the next append starts on a fresh line.
- A file damaged anywhere else is renamed to `<name>.corrupt-<UTC timestamp>` with an error log
  line, and the conversation starts empty. Nothing raises on damage.

Two store objects (or processes) on one directory are not supported: neither would see the
other's appends, so conflict detection and torn-tail repair could cut off a live write.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiofiles
import aiofiles.os
import structlog

from ops.aio import KeyedLocks
from stores._file_recent import read_recent
from stores._fs import STORE_CALLS, fsync_directory, rename_durably, truncate_durably, unlink_durably, write_all
from stores._records import decode_record, encode_batch
from stores.base import ConflictError, ConversationStore, Record, StoreError

__all__ = ["FileConversationStore", "conversation_file_name"]

log = structlog.get_logger(__name__)

_SLUG_LENGTH = 40
_TAIL_BLOCK = 64 * 1024
_UNSAFE = re.compile(r"[^a-z0-9_-]")
SUFFIX = ".jsonl"


@functools.lru_cache(maxsize=256)  # the active chats'; a burst of new ones must not leave all theirs behind
def conversation_file_name(conversation_id: str) -> str:
    """A safe, unique file name for any id: `<slug>.<digest>.jsonl`.

    The digest (SHA-256 of the id's UTF-8, 128 bits shown) makes names unique; the slug (the id
    lowercased, unsafe characters as `_`, at most 40) only helps a person find a chat. The name
    uses only `[a-z0-9_.-]`, so no separator or `..` can appear, and ids differing only in case
    get different digests: a case-folding file system cannot merge two conversations.
    """
    raw = conversation_id.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(raw).hexdigest()[:32]
    slug = _UNSAFE.sub("_", conversation_id.lower()[:_SLUG_LENGTH])
    # A leading '-' (negative Telegram group ids) would read as an option to shell tools.
    slug = ("n" + slug[1:]) if slug.startswith("-") else slug
    return f"{slug or '_'}.{digest}{SUFFIX}"


class _RecentSeqs(dict[str, int]):
    """The last seqs of the conversations written to most recently, at most `_KEPT_SEQS` of them.

    An absent one is read from the file's last line at the next append: forgetting costs one read.
    Kept for every conversation ever seen, thousands of small entries made during a burst would
    stay scattered over the heap and keep its pages resident after the burst's garbage is freed."""

    def __setitem__(self, key: str, value: int) -> None:
        self.pop(key, None)  # re-inserted at the end: the oldest entries are the first ones
        super().__setitem__(key, value)
        if len(self) > _KEPT_SEQS:
            del self[next(iter(self))]


_KEPT_SEQS = 256


class FileConversationStore(ConversationStore):
    """Histories as JSONL files under `directory` (created on `open`).

    File I/O runs in worker threads, so appends to different conversations proceed in parallel
    and never block the event loop; work on one conversation is serialised by a per-conversation
    lock. An append is one thread hop (open, write, fsync, close) rather than aiofiles' one hop
    per call: the hops, not the syscalls, dominate its latency on a fast disk.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._locks: KeyedLocks[str] = KeyedLocks()
        # File name -> last seq on disk (-1: no records). Absent: not yet read in this process.
        self._last_seq: dict[str, int] = _RecentSeqs()

    async def open(self) -> None:
        """Create the directory if needed."""
        try:
            await aiofiles.os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {str(self.directory)!r}: {exc.strerror}") from exc

    def path_for(self, conversation_id: str) -> Path:
        """The file that holds (or will hold) the conversation's history."""
        return self.directory / conversation_file_name(conversation_id)

    async def load(self, conversation_id: str) -> list[Record]:
        """Every readable record; damage is logged and repaired, never raised."""
        name = conversation_file_name(conversation_id)
        async with self._locks.hold(name):
            return await self._load_locked(conversation_id, name)

    async def load_recent(self, conversation_id: str, stop_at: Callable[[Record], bool]) -> list[Record]:
        """The newest records, read from the end of the file backwards in a worker thread (parsing
        included), back to the first for which `stop_at` is True. Damage is handled as by `load`."""
        name = conversation_file_name(conversation_id)
        path = self.directory / name
        async with self._locks.hold(name):
            try:
                read = await asyncio.to_thread(read_recent, path, stop_at)
            except OSError as exc:
                raise StoreError(f"cannot read {name}: {exc.strerror}", conversation_id=conversation_id) from exc
            if read is None:
                self._last_seq[name] = -1
                return []
            if read.damaged:
                # Rare: the full load quarantines the file, as it always has.
                records = await self._load_locked(conversation_id, name)
                return _recent(records, stop_at)
            if read.sound_length < read.size:
                log.warning(
                    "store_torn_tail_skipped",
                    conversation_id=conversation_id,
                    file=name,
                    offset=read.sound_length,
                    bytes=read.size - read.sound_length,
                )
                await self._truncate(conversation_id, path, read.sound_length)
            self._last_seq[name] = read.records[-1]["seq"] if read.records else -1
            return read.records

    async def append(self, conversation_id: str, records: Sequence[Record]) -> None:
        """Write the records as lines, `fsync`, then return.

        Raises ConflictError if the first `seq` is not above the last stored one, StoreError if a
        record is malformed (nothing is written then) or the disk refuses the write.
        """
        batch = encode_batch(conversation_id, records)
        if not batch:
            return
        name = conversation_file_name(conversation_id)
        path = self.directory / name
        async with self._locks.hold(name):
            last = self._last_seq.get(name)
            if last is None:
                last = await self._read_last_seq(conversation_id, name)
            if batch[0].seq <= last:
                raise ConflictError(conversation_id, batch[0].seq)
            data = b"".join(item.data + b"\n" for item in batch)
            try:
                await STORE_CALLS.call(functools.partial(_append_lines, path, data, last < 0))
            except BaseException as exc:
                # A partial line may be on disk: forget what we knew so the next access reads
                # the tail again (and cuts the torn line off) before writing after it.
                self._last_seq.pop(name, None)
                if isinstance(exc, OSError):
                    raise StoreError(
                        f"cannot append to {name}: {exc.strerror}", conversation_id=conversation_id
                    ) from exc
                raise
            self._last_seq[name] = batch[-1].seq

    async def delete(self, conversation_id: str) -> None:
        """Remove the conversation's file (quarantined copies stay for a person to inspect)."""
        name = conversation_file_name(conversation_id)
        async with self._locks.hold(name):
            try:
                await asyncio.to_thread(unlink_durably, self.directory / name)
            except OSError as exc:
                self._last_seq.pop(name, None)
                raise StoreError(f"cannot delete {name}: {exc.strerror}", conversation_id=conversation_id) from exc
            self._last_seq[name] = -1

    async def _load_locked(self, conversation_id: str, name: str) -> list[Record]:
        path = self.directory / name
        try:
            async with aiofiles.open(path, "rb") as file:
                data = await file.read()
        except FileNotFoundError:
            self._last_seq[name] = -1
            return []
        except OSError as exc:
            raise StoreError(f"cannot read {name}: {exc.strerror}", conversation_id=conversation_id) from exc
        records, good_length, bad_line = _parse(data)
        if bad_line is not None:
            await self._quarantine(conversation_id, path, bad_line)
            self._last_seq[name] = -1
            return []
        if good_length < len(data):
            log.warning(
                "store_torn_tail_skipped",
                conversation_id=conversation_id,
                file=name,
                offset=good_length,
                bytes=len(data) - good_length,
            )
            await self._truncate(conversation_id, path, good_length)
        self._last_seq[name] = records[-1]["seq"] if records else -1
        return records

    async def _read_last_seq(self, conversation_id: str, name: str) -> int:
        """The last stored seq, from the file's last line; a damaged tail falls back to a full load."""
        path = self.directory / name
        try:
            tail = await asyncio.to_thread(_read_last_line, path)
        except OSError as exc:
            raise StoreError(f"cannot read {name}: {exc.strerror}", conversation_id=conversation_id) from exc
        if tail is None:
            self._last_seq[name] = -1
            return -1
        line, clean = tail
        if clean:
            try:
                seq = int(decode_record(line)["seq"])
            except ValueError:
                pass  # a corrupt last line: the full load below logs it, cuts it off or quarantines
            else:
                self._last_seq[name] = seq
                return seq
        records = await self._load_locked(conversation_id, name)
        return int(records[-1]["seq"]) if records else -1

    async def _quarantine(self, conversation_id: str, path: Path, bad_line: int) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            await asyncio.to_thread(rename_durably, path, target)
        except OSError as exc:
            raise StoreError(
                f"cannot move the damaged {path.name} aside: {exc.strerror}", conversation_id=conversation_id
            ) from exc
        log.error(
            "store_file_quarantined",
            conversation_id=conversation_id,
            file=path.name,
            quarantined_as=target.name,
            bad_line=bad_line,
        )

    async def _truncate(self, conversation_id: str, path: Path, length: int) -> None:
        try:
            await asyncio.to_thread(truncate_durably, path, length)
        except OSError as exc:
            raise StoreError(
                f"cannot cut the torn tail off {path.name}: {exc.strerror}", conversation_id=conversation_id
            ) from exc


def _parse(data: bytes) -> tuple[list[Record], int, int | None]:
    """Split a history into records.

    Returns the records, the length of the sound prefix (what follows it is a torn or corrupt
    last line, to be cut off), and the 1-based number of a bad line that is followed by good
    ones (the file must be quarantined), or None.
    """
    records: list[Record] = []
    good_length = 0
    bad_line: int | None = None
    start = 0
    number = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break  # anything after the last newline is a torn line
        number += 1
        record: Record | None
        try:
            record = decode_record(data[start:end])
        except ValueError:
            record = None
        if record is None or (records and record["seq"] <= records[-1]["seq"]):
            if bad_line is None:
                bad_line = number
        elif bad_line is not None:
            return [], 0, bad_line
        else:
            records.append(record)
            good_length = end + 1
        start = end + 1
    return records, good_length, None


def _recent(records: list[Record], stop_at: Callable[[Record], bool]) -> list[Record]:
    """The tail of `records` back to the first (from the end) for which `stop_at` is True."""
    for index in range(len(records) - 1, -1, -1):
        if stop_at(records[index]):
            return records[index:]
    return records


def _append_lines(path: Path, data: bytes, new_file: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        write_all(fd, data, sync=True)
    finally:
        os.close(fd)
    if new_file:
        # The file's directory entry must survive a power loss too, or the history vanishes.
        fsync_directory(path.parent)


def _read_last_line(path: Path) -> tuple[bytes, bool] | None:
    """The last line and whether it ended with a newline; None for a missing or empty file.

    Reads backwards in blocks, so the cost is that of the last record, not of the history.
    """
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return None
        chunks: list[bytes] = []
        position = size
        while position > 0:
            step = min(_TAIL_BLOCK, position)
            position -= step
            file.seek(position)
            chunks.insert(0, file.read(step))
            block = b"".join(chunks)
            body = block[:-1] if block.endswith(b"\n") else block
            newline = body.rfind(b"\n")
            if newline >= 0:
                return body[newline + 1 :], block.endswith(b"\n")
        block = b"".join(chunks)
        return (block[:-1] if block.endswith(b"\n") else block), block.endswith(b"\n")
