"""Small durable file-system steps (run them in a worker thread: they block)."""

from __future__ import annotations

import os
from pathlib import Path

from ops.aio import BatchedCalls

__all__ = ["STORE_CALLS", "fsync_directory", "rename_durably", "truncate_durably", "unlink_durably", "write_all"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

STORE_CALLS = BatchedCalls()
"""The file stores' hot blocking writes (conversation appends, shared-log operations, the ingress
log's updates): those that fall due in the same turn of the event loop make one worker-thread trip."""


_DATASYNC = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def write_all(fd: int, data: bytes, *, sync: bool) -> None:
    """Write every byte (os.write may write fewer), then, if asked, make them durable: `fdatasync`,
    which flushes the data and what reading it back needs (the file's size), not its timestamps
    (a third cheaper than `fsync` on ext4; a new file's directory entry is its caller's to sync)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if sync:
        _DATASYNC(fd)


def truncate_durably(path: Path, length: int) -> None:
    """Cut the file to `length` bytes and `fsync` it."""
    fd = os.open(path, os.O_WRONLY | _CLOEXEC)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_durably(source: Path, target: Path) -> None:
    """Rename within one directory and `fsync` the directory, so the rename survives power loss."""
    os.rename(source, target)
    fsync_directory(source.parent)


def unlink_durably(path: Path) -> None:
    """Remove the file if it exists and `fsync` its directory."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (new, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
