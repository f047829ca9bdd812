"""What the conversation actor needs for streamed turns and /stop: the text a turn has written so
far (shown live through a ReplyStream when the channel has one), and the switch a /stop flips."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from actors import texts
from actors.protocol import Command, ConversationMessage, ReplyStream, UserMessage

__all__ = ["StopSwitch", "TurnOutput", "TurnStopped", "stopped_text", "write_through"]


class TurnStopped(Exception):
    """The running turn was cut short by /stop."""


def stopped_text(written: str) -> str:
    """The answer of a stopped turn: what was written, marked as stopped."""
    written = written.rstrip()
    return f"{written}\n\n{texts.STOPPED}" if written.strip() else texts.STOPPED


async def write_through(write: Awaitable[None], then: Callable[[], None]) -> None:
    """Await `write` to its end even when the caller is cancelled meanwhile, and run `then` once it
    went through (before the cancellation goes on): a /stop must not cut a store write short, nor
    leave one that went through unaccounted for. A failed write raises, and `then` does not run."""
    task = asyncio.ensure_future(write)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is None:
            then()
        raise
    then()


class TurnOutput:
    """The text of one turn as the model writes it: every step's text, steps apart by a blank line.

    Deltas only append (cheap: this runs per streamed token); the text is joined when someone reads
    it, which a preview does a few times a second at most. `stream` is told of every change.
    `async with` closes the stream however the turn ends.
    """

    def __init__(self) -> None:
        self.stream: ReplyStream | None = None
        self._steps: list[str] = []
        self._pieces: list[str] = []
        self._text: str | None = ""
        self._started = time.perf_counter()
        self.first_text_ms: float | None = None
        """Milliseconds from the turn's start until text was first visible to the user."""

    def delta(self, piece: str) -> None:
        """A piece of the current step's text (the turn loop's `on_delta`)."""
        self._pieces.append(piece)
        self._text = None
        if self.stream is not None:
            self.stream.changed()

    def retry(self) -> None:
        """The model is asked again: the current step's text so far is void (its `on_retry`)."""
        self._pieces.clear()
        self._text = None
        if self.stream is not None:
            self.stream.changed()

    def tool_boundary(self, step_text: str) -> None:
        """The step ended in tool calls; its recorded text replaces what streamed, and a new step begins."""
        self._steps.append(step_text.strip())
        self._pieces.clear()
        self._text = None
        if self.stream is not None:
            self.stream.tool_boundary()

    def text(self) -> str:
        """Everything written so far, in Markdown."""
        if self._text is None:
            current = "".join(self._pieces).strip()
            self._text = "\n\n".join(part for part in (*self._steps, current) if part)
        return self._text

    def visible(self) -> None:
        """Text became visible to the user now (a preview, or the answer itself): the first time counts."""
        if self.first_text_ms is None:
            self.first_text_ms = (time.perf_counter() - self._started) * 1000

    async def __aenter__(self) -> TurnOutput:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.stream is not None:
            await self.stream.aclose()


class StopSwitch:
    """The out-of-band /stop of one conversation actor.

    `interrupt` runs in the gateway's task: it cancels the actor's task while a turn runs (inside
    `running`), or holds the stop for turns queued before it (they stop at once when they start,
    which is also how a turn replayed after a crash stays stopped). The actor `settle`s a held stop
    once nothing before it is left: the stop's own update is then done.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._cancelled = False
        self.request: Command | None = None
        """The /stop being carried out, until it is settled."""
        self.stopped_any = False
        """A turn before the /stop was stopped (or its answer sent) while the stop was held."""

    @contextmanager
    def running(self) -> Iterator[None]:
        """The body is the turn a /stop cancels."""
        self._task = asyncio.current_task()
        try:
            yield
        finally:
            self._task = None

    def interrupt(self, command: ConversationMessage, waiting: bool) -> bool:
        """Take a /stop: True if a turn runs, or (`waiting`) messages are queued that it may cover.
        Anything but a /stop is not taken, nor a second /stop while one is carried out."""
        if not (isinstance(command, Command) and command.name == "stop") or self.request is not None:
            return False
        if self._task is not None:
            self.request = command
            self._cancelled = True
            self._task.cancel()
            return True
        if waiting:
            self.request = command
            return True
        return False

    def consume_cancel(self) -> bool:
        """In `except CancelledError`: True if the cancellation was only this switch's (then it is
        withdrawn, and the turn counts as stopped); False if someone else cancelled the task too."""
        if not self._cancelled:
            return False
        self._cancelled = False
        task = asyncio.current_task()
        return task is not None and task.uncancel() == 0

    def covers(self, message: ConversationMessage) -> bool:
        """True if a held /stop came after `message`, which is a turn that should not run."""
        request = self.request
        if request is None or not isinstance(message, UserMessage):
            return False
        return message.update_id is None or request.update_id is None or message.update_id < request.update_id

    def passed_by(self, message: ConversationMessage) -> bool:
        """Before `message` is handled: True if it came after the held /stop, which must be settled
        first (everything the stop could cover is behind). Notes a turn the stop covers."""
        request = self.request
        if request is None:
            return False
        if message.update_id is not None and request.update_id is not None and message.update_id > request.update_id:
            return True
        if self.covers(message):
            self.stopped_any = True
        return False

    def settle(self) -> tuple[Command, bool] | None:
        """End the held /stop: (the command, whether it stopped anything), or None if none was held."""
        request, stopped, self.request, self.stopped_any = self.request, self.stopped_any, None, False
        return None if request is None else (request, stopped)
