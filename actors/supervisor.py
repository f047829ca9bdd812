"""OTP-style supervision: restart children that fail, with backoff, within a restart intensity."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import structlog

from conf import BackoffSettings
from ops.backoff import Backoff

__all__ = ["Child", "Restart", "Supervisor"]

log = structlog.get_logger(__name__)

Restart = Literal["permanent", "transient", "temporary"]
"""permanent: always restarted; transient: restarted only after a crash; temporary: never restarted."""

ChildBody = Callable[[], Coroutine[Any, Any, None]]


class Child:
    """One supervised task: its body, restart policy and restart history."""

    __slots__ = ("_restarts", "_timer", "body", "finished", "name", "on_exit", "restart", "stop", "stopping", "task")

    def __init__(
        self,
        name: str,
        body: ChildBody,
        restart: Restart,
        stop: Callable[[], None] | None,
        on_exit: Callable[[BaseException | None], None] | None,
    ) -> None:
        self.name = name
        self.body = body
        self.restart = restart
        self.stop = stop
        self.on_exit = on_exit
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Made on the first restart: an empty deque is 760 bytes, a fifth of an idle actor,
        # and most children never restart.
        self._restarts: deque[float] | None = None
        self._timer: asyncio.TimerHandle | None = None


class Supervisor:
    """Owns long-lived tasks and restarts them as their policy says.

    A crashed child is restarted after `backoff`'s delay for its restart count (jittered, capped;
    plain settings are made into `Backoff(settings)`). More than `max_restarts` crashes within
    `window_seconds` exceed its restart intensity: a transient child is then given up (its
    `on_exit` hears why), a permanent one escalates (`on_escalate`), which the system answers by
    stopping with exit status 1 so Docker restarts the process.
    """

    def __init__(
        self,
        name: str,
        *,
        backoff: Backoff | BackoffSettings,
        max_restarts: int,
        window_seconds: float,
        on_escalate: Callable[[str, BaseException | None], None] | None = None,
    ) -> None:
        self.name = name
        self._backoff = Backoff.of(backoff)
        self._max_restarts = max_restarts
        self._window = window_seconds
        self._on_escalate = on_escalate
        self._children: dict[str, Child] = {}
        self._stopping = False

    def __len__(self) -> int:
        return len(self._children)

    def start_child(
        self,
        name: str,
        body: ChildBody,
        *,
        restart: Restart = "permanent",
        stop: Callable[[], None] | None = None,
        on_exit: Callable[[BaseException | None], None] | None = None,
    ) -> Child:
        """Start `body()` as a named task now and supervise it.

        `stop` asks the child to finish on its own (an actor's stop message); without it, stopping
        cancels the task. `on_exit` runs once when the child is finally gone, with the exception
        that ended it, if any.
        """
        if self._stopping:
            raise RuntimeError(f"supervisor {self.name} is stopping")
        if name in self._children:
            raise ValueError(f"child {name!r} already exists")
        child = Child(name, body, restart, stop, on_exit)
        self._children[name] = child
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        child._timer = None
        if child.stopping:
            self._finish(child, None)
            return
        self._start_task(child)

    def _start_task(self, child: Child) -> None:
        task = asyncio.get_running_loop().create_task(child.body(), name=child.name)
        child.task = task
        # A partial rather than a lambda: mypy can type it, and it is smaller (one per actor).
        task.add_done_callback(functools.partial(self._on_done, child))

    def _on_done(self, child: Child, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._finish(child, None)
            return
        exc = task.exception()
        if child.stopping or child.restart == "temporary" or (exc is None and child.restart == "transient"):
            if exc is not None:
                log.error("child_failed", supervisor=self.name, child=child.name, error=repr(exc), exc_info=exc)
            self._finish(child, exc)
            return
        now = time.monotonic()
        restarts = child._restarts
        if restarts is None:
            restarts = child._restarts = deque()
        restarts.append(now)
        while restarts and now - restarts[0] > self._window:
            restarts.popleft()
        if len(restarts) > self._max_restarts:
            log.error(
                "child_restart_intensity_exceeded",
                supervisor=self.name,
                child=child.name,
                restarts=len(restarts),
                window_s=self._window,
                error=repr(exc),
            )
            self._finish(child, exc)
            if child.restart == "permanent" and self._on_escalate is not None:
                self._on_escalate(child.name, exc)
            return
        delay = self._backoff.delay(len(restarts))
        if exc is None:
            log.warning("child_exited", supervisor=self.name, child=child.name, restart_in_s=round(delay, 3))
        else:
            log.warning(
                "child_crashed",
                supervisor=self.name,
                child=child.name,
                restart_in_s=round(delay, 3),
                error=repr(exc),
                exc_info=exc,
            )
        child._timer = asyncio.get_running_loop().call_later(delay, self._spawn, child)

    def _finish(self, child: Child, exc: BaseException | None) -> None:
        if self._children.get(child.name) is child:
            del self._children[child.name]
        if not child.finished.done():
            child.finished.set_result(None)
            if child.on_exit is not None:
                try:
                    child.on_exit(exc)
                except Exception:
                    log.exception("child_on_exit_failed", supervisor=self.name, child=child.name)

    def stop_child(self, child: Child) -> None:
        """Ask one child to finish (its stop message, or cancellation); restarts no more."""
        child.stopping = True
        if child._timer is not None:
            child._timer.cancel()
            child._timer = None
            if child.stop is None:
                self._finish(child, None)
                return
            # A crashed child waiting for its restart may still hold work: an actor's mailbox
            # outlives its incarnations. Start it now, already asked to stop, so that work is
            # handled within the grace period instead of being dropped.
            child.stop()
            self._start_task(child)
        elif child.stop is not None:
            child.stop()
        elif child.task is not None:
            child.task.cancel()

    async def stop(self, grace_seconds: float) -> None:
        """Stop every child in reverse start order, each within what is left of the grace period;
        a child still running when it is over is cancelled. Returns when no child task is left."""
        self._stopping = True
        deadline = time.monotonic() + grace_seconds
        for child in reversed(list(self._children.values())):
            await self._stop_one(child, deadline)

    async def stop_all_at_once(self, grace_seconds: float) -> None:
        """Stop every child concurrently (independent peers such as conversation actors)."""
        self._stopping = True
        deadline = time.monotonic() + grace_seconds
        children = list(self._children.values())
        for child in children:
            self.stop_child(child)
        await asyncio.gather(*(self._stop_one(child, deadline) for child in children))

    async def _stop_one(self, child: Child, deadline: float) -> None:
        self.stop_child(child)
        remaining = max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                await asyncio.shield(child.finished)
        except TimeoutError:
            log.warning("child_stop_timed_out", supervisor=self.name, child=child.name)
            if child.task is not None:
                child.task.cancel()
        if child.task is not None and not child.task.done():
            # Cancellation cleans up inside the task; wait for it so no task outlives stop().
            await asyncio.wait([child.task])
        await asyncio.shield(child.finished)
