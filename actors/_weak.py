"""A bound method that does not keep its object alive.

An actor's parts call back into it (the parking's retry wakes the actor, a turn's preview records
through the actor's append). Held as plain bound methods, those calls make every actor a reference
cycle: evicted, it is not freed but left to the full collector, ~20 objects a conversation, so a
burst of new chats piles up tens of thousands of dead actors between collections and leaves the
allocator's arenas that held them pinned afterwards."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

__all__ = ["weakly"]

P = ParamSpec("P")
R = TypeVar("R")


def weakly(method: Callable[P, R]) -> Callable[P, R]:
    """`method` (bound), calling it through a weak reference to its object. Called once the object
    is gone, it raises ReferenceError: its owner outlived the actor, which is a bug."""
    return cast("Callable[P, R]", _WeakMethod(method))


class _WeakMethod:
    """The object's plain weak reference (shared by all of an object's weak methods: one without a
    callback is made once per object) and the method's function: ~100 bytes, where
    `weakref.WeakMethod` and a closure over it took ~700 (a reference with a callback, the callback's
    closure, the closure's cells), for each of a live conversation's callbacks."""

    __slots__ = ("_function", "_object")

    def __init__(self, method: Any) -> None:
        self._object = weakref.ref(method.__self__)
        self._function = method.__func__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self._object()
        if bound is None:
            raise ReferenceError(f"{self._function.__qualname__}: its object is gone")
        return self._function(bound, *args, **kwargs)
