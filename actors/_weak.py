"""A bound method that does not keep its object alive.

An actor's parts call back into it (the parking's retry wakes the actor, a turn's preview records
through the actor's append). Held as plain bound methods, those calls make every actor a reference
cycle: evicted, it is not freed but left to the full collector, ~20 objects a conversation, so a
burst of new chats piles up tens of thousands of dead actors between collections and leaves the
allocator's arenas that held them pinned afterwards."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["weakly"]

P = ParamSpec("P")
R = TypeVar("R")


def weakly(method: Callable[P, R]) -> Callable[P, R]:
    """`method` (bound), calling it through a weak reference to its object. Called once the object
    is gone, it raises ReferenceError: its owner outlived the actor, which is a bug."""
    reference = weakref.WeakMethod(method)
    name = getattr(method, "__qualname__", repr(method))

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = reference()
        if bound is None:
            raise ReferenceError(f"{name}: its object is gone")
        return bound(*args, **kwargs)

    return call
