"""Giving freed memory back to the operating system after many actors were evicted; no garbage
collection while the process starts."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from typing import Any, cast

__all__ = [
    "limit_malloc_arenas",
    "pause_collection",
    "release_free_memory",
    "resume_collection",
    "return_large_blocks",
]


def _libc_function(name: str) -> Any:
    """A function of the C library, looked up among the process's own symbols (the interpreter is
    linked with it); None where it has none (musl, macOS have no malloc_trim or these mallopt
    parameters). Not `ctypes.util.find_library`: it runs `ldconfig -p` in a subprocess each time
    (~10 ms, three times before the first poll)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _find_malloc_trim() -> Callable[[int], int] | None:
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast("Callable[[int], int]", trim)


_MALLOC_TRIM = _find_malloc_trim()
_M_ARENA_MAX = -8  # glibc's mallopt parameter number
_M_MMAP_THRESHOLD = -3


def _mallopt(parameter: int, value: int) -> None:
    mallopt = _libc_function("mallopt")
    if mallopt is None:  # not glibc
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(parameter, value)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before any thread starts. Each thread that allocates (the file
    store's I/O threads) otherwise gets an arena of its own, whose pages stay resident: tens of
    MB on a small VM for nothing (the effect of MALLOC_ARENA_MAX, set from inside)."""
    _mallopt(_M_ARENA_MAX, arenas)


def return_large_blocks(threshold_bytes: int = 1024 * 1024) -> None:
    """Have glibc map every allocation of `threshold_bytes` or more on its own, and unmap it when
    freed. By default the threshold grows to the size of the largest block freed (up to 32 MB), so
    after one decoded photo (~9 MB) later ones come from the heap and stay resident after they are
    freed: a burst of photos would leave its peak behind (the effect of MALLOC_MMAP_THRESHOLD_)."""
    _mallopt(_M_MMAP_THRESHOLD, threshold_bytes)


def release_free_memory() -> None:
    """Collect garbage, then ask glibc to return free heap pages. Without it, the resident size
    after a burst of conversations stays at its peak even once their actors are gone."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def pause_collection() -> None:
    """No cyclic garbage collection from now until `resume_collection`. Start-up imports and builds
    ~100,000 objects that live as long as the process: the collector would walk them again and
    again as they accumulate (a fifth of the CPU of the imports) and find little to free."""
    gc.disable()


def resume_collection() -> None:
    """Collect the garbage start-up left (once), and collect as usual from now on."""
    gc.collect()
    gc.enable()
