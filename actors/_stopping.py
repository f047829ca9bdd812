"""/stop in a conversation actor: the switch that cancels the running turn, out of band."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from actors import texts
from actors.protocol import Command, ConversationMessage, UserMessage

__all__ = ["StopSwitch", "TurnStopped", "stopped_text"]

T = TypeVar("T")


class TurnStopped(Exception):
    """The turn was cut short by /stop (or a /stop came before it could start)."""


def stopped_text(written: str) -> str:
    """The answer of a stopped turn: what was written, marked as stopped."""
    written = written.rstrip()
    return f"{written}\n\n{texts.STOPPED}" if written.strip() else texts.STOPPED


class StopSwitch:
    """The out-of-band /stop of one conversation actor.

    `interrupt` runs in the gateway's task: it cancels the actor's task while a turn runs (inside
    `stoppable`), or, when messages are queued, holds the stop for the turns queued before it (they
    stop as they start, which is also how a turn replayed after a crash stays stopped). The actor
    settles a held stop once nothing it could cover is left (`settle`): the stop's update is done.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._writing = 0
        self._held = False
        """A /stop came during a store write: it cuts the turn once the write is whole."""
        self.request: Command | None = None
        """The /stop being carried out, until it is settled."""
        self.stopped_any = False
        """A turn was stopped (or its answer sent) while the stop was held."""

    def interrupt(self, message: object, waiting: bool) -> bool:
        """Take a /stop: True if a turn runs, or (`waiting`) messages are queued that it may cover.
        Anything but a /stop is not taken, nor a second /stop while one is carried out."""
        taken = isinstance(message, Command) and message.name == "stop" and self.request is None
        if taken and isinstance(message, Command):
            if self._task is not None:
                self._cancelled = True
                if self._writing:
                    self._held = True
                else:
                    self._task.cancel()
            elif not waiting:
                taken = False
            if taken:
                self.request = message
        return taken

    async def stoppable(self, message: ConversationMessage, turn: Coroutine[Any, Any, T]) -> T:
        """Await the turn's model and tool work; TurnStopped if a /stop cut it short, or came before it."""
        if self.covers(message):
            turn.close()
            self.stopped_any = True
            raise TurnStopped
        try:
            with self._running():
                return await turn
        except asyncio.CancelledError:
            if not self._cancelled:
                raise
            self._cancelled = False
            task = asyncio.current_task()
            if task is not None and task.uncancel() > 0:
                raise  # cancelled by someone else too (the actor is stopping): that goes on
            self.stopped_any = True
            raise TurnStopped from None

    async def write_through(self, write: Awaitable[T]) -> T:
        """Await `write` to its end: a /stop that comes meanwhile stops the turn after it, as it
        would have during the model's work (a /stop must not cut a store write, and the
        bookkeeping after it, in half)."""
        self._writing += 1
        try:
            return await write
        finally:
            self._writing -= 1
            if self._held and not self._writing:
                self._held = False
                raise asyncio.CancelledError  # the /stop's, heard by `stoppable` as if it had cancelled

    @contextmanager
    def _running(self) -> Iterator[None]:
        self._task = asyncio.current_task()
        try:
            yield
        finally:
            self._task = None

    def covers(self, message: ConversationMessage) -> bool:
        """True if a held /stop came after `message`, which is a turn that should not run."""
        request = self.request
        if request is None or not isinstance(message, UserMessage):
            return False
        return message.update_id is None or request.update_id is None or message.update_id < request.update_id

    def passed_by(self, message: object) -> bool:
        """Before `message` is handled: True if it came after the held /stop, which must be settled
        first (nothing the stop could cover is left); notes a turn the stop covers."""
        request = self.request
        update_id = getattr(message, "update_id", None)
        if request is None or not isinstance(message, Command | UserMessage):
            return False
        if update_id is not None and request.update_id is not None and update_id > request.update_id:
            return True
        if self.covers(message):
            self.stopped_any = True
        return False

    def settle(self) -> tuple[Command, bool] | None:
        """End the held /stop: (the command, whether it stopped anything), or None if none is held."""
        request, stopped, self.request, self.stopped_any = self.request, self.stopped_any, None, False
        return None if request is None else (request, stopped)
