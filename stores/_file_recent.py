"""A JSONL history read from its end backwards: what `FileConversationStore.load_recent` reads.

Blocking (run it in a worker thread). It reads blocks from the end of the file until the caller's
`stop_at` says the oldest record it needs has been read, so its cost is that of the records
returned, whatever the file's length. Damage is reported, not repaired: the store cuts a torn tail
off and quarantines a file damaged further in, exactly as its full load does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stores._records import decode_record
from stores.base import Record

__all__ = ["RecentRead", "read_recent"]

_BLOCK = 256 * 1024
_NEWLINE = 0x0A


@dataclass(frozen=True, slots=True)
class RecentRead:
    """What a backwards read found."""

    records: list[Record]
    """The records read, in `seq` order (empty when `damaged`)."""
    size: int
    """The file's length when it was read."""
    sound_length: int
    """The length of the file up to the end of its newest good line: below `size` when a torn or
    corrupt tail follows it (the store cuts it off)."""
    damaged: bool = False
    """A bad or out-of-order line lies before good ones: the file needs the full load's quarantine."""


def read_recent(path: Path, stop_at: Callable[[Record], bool]) -> RecentRead | None:
    """The newest records of the file back to the first for which `stop_at` is True; None if there
    is no file. OSError propagates."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        size = file.seek(0, os.SEEK_END)
        newest_first: list[Record] = []
        sound_length: int | None = None
        for line, end, terminated in _lines_backwards(file, size):
            record = _decode(line) if terminated else None
            if record is not None and newest_first and record["seq"] >= newest_first[-1]["seq"]:
                record = None  # out of order: as damaged as a line that does not parse
            if record is None:
                if sound_length is None:
                    continue  # after the newest good line: a torn tail, cut off by the store
                return RecentRead([], size, size, damaged=True)
            if sound_length is None:
                sound_length = end
            newest_first.append(record)
            if stop_at(record):
                break
    newest_first.reverse()
    return RecentRead(newest_first, size, sound_length if sound_length is not None else 0)


def _decode(line: bytes) -> Record | None:
    try:
        return decode_record(line)
    except ValueError:
        return None


def _lines_backwards(file: BinaryIO, size: int, block: int = _BLOCK) -> Iterator[tuple[bytes, int, bool]]:
    """Each line of the file from the last: its bytes (without the newline), the offset just past it
    (its newline included), and whether a newline ends it (only the last line may lack one).

    `buffer[:cut]` holds the file's bytes from `start` that are not yet yielded; a block is read in
    front of it only when no newline is left in it, so each byte is copied once per block read.
    """
    start, buffer, cut = size, b"", 0
    while start + cut > 0:
        while True:
            content_end = cut - 1 if cut and buffer[cut - 1] == _NEWLINE else cut
            newline = buffer.rfind(b"\n", 0, content_end) if cut else -1
            if newline >= 0 or start == 0:
                break
            step = min(block, start)
            start -= step
            file.seek(start)
            buffer = _read_exactly(file, step) + buffer[:cut]
            cut = len(buffer)
        line_start = newline + 1
        yield buffer[line_start:content_end], start + cut, content_end < cut
        cut = line_start


def _read_exactly(file: BinaryIO, count: int) -> bytes:
    data = file.read(count)
    if len(data) != count:
        # The store owns the file and holds its lock: it cannot shrink while read.
        raise OSError(errno.EIO, f"short read: {len(data)} of {count} bytes")
    return data
