"""Actors: a task that owns its state and handles the messages of a bounded mailbox one at a time."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, TypeVar

import structlog

from actors._mailbox import ActorStopped, Mailbox, MailboxFull

__all__ = ["Actor", "ActorStopped", "MailboxFull", "PoisonMessage"]

log = structlog.get_logger(__name__)

M = TypeVar("M")


class PoisonMessage(Exception):
    """A message crashed its actor twice and was dead-lettered; `__cause__` is the last failure."""

    def __init__(self, actor: str, message: object) -> None:
        super().__init__(f"{type(message).__name__} crashed {actor} twice and was dead-lettered")
        self.actor = actor
        self.message = message


class _Stop:
    """Goes through the mailbox like any message, so everything told before it is handled first."""

    __slots__ = ()


_STOP = _Stop()


class _Envelope:
    # Slots keep an envelope at 64 bytes; one is made per message.
    __slots__ = ("attempts", "message", "reply")

    def __init__(self, message: Any, reply: asyncio.Future[Any] | None) -> None:
        self.message = message
        self.reply = reply
        self.attempts = 0


class Actor(Generic[M]):
    """Base class of actors. Subclasses implement `handle`; only the actor's own task calls it.

    Lifecycle: `run` is the body of the actor's task, started (and restarted after a crash) by a
    Supervisor. Each incarnation calls `on_start` (load state), handles messages in order, and calls
    `on_stop` when it ends normally. The mailbox outlives incarnations, so a crash loses no queued
    message. A message whose handling raises crashes the incarnation and is retried first by the
    next one; if it fails again it is dead-lettered: `on_dead_letter` runs, an asker gets
    PoisonMessage, and the actor goes on with the next message.
    """

    def __init__(self, name: str, mailbox_size: int) -> None:
        self._mailbox = Mailbox(name, mailbox_size)
        self._busy = False
        self.last_active = time.monotonic()

    @property
    def name(self) -> str:
        """The actor's name, in logs and errors (kept by its mailbox: an attribute fewer per actor)."""
        return self._mailbox.name

    # -- for other tasks -------------------------------------------------------------------------

    def tell(self, message: M) -> None:
        """Queue `message` without waiting. Raises MailboxFull or ActorStopped; never blocks."""
        self._mailbox.put(_Envelope(message, None))

    def tell_self(self, message: M) -> None:
        """Queue a message of the actor's own (a timer's) even when the mailbox is full: it must
        get in whatever the load. Raises ActorStopped once the actor takes no more messages."""
        self._mailbox.put(_Envelope(message, None), force=True)

    def ask_future(self, message: M) -> asyncio.Future[Any]:
        """Queue `message` and return the future of its answer, without a coroutine per message
        (for callers that fan out many asks and gather them). Raises like `tell`."""
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._mailbox.put(_Envelope(message, reply))
        return reply

    async def ask(self, message: M, timeout: float | None = None) -> Any:
        """Queue `message` and wait for what `handle` returns.

        Raises MailboxFull / ActorStopped at once if it cannot be queued, PoisonMessage if it was
        dead-lettered, ActorStopped if the actor stopped before handling it, TimeoutError after
        `timeout` seconds (the message stays queued and will still be handled).
        """
        reply = self.ask_future(message)
        if timeout is None:
            return await reply
        async with asyncio.timeout(timeout):
            return await asyncio.shield(reply)

    def interrupt(self, message: M) -> bool:
        """Hand `message` to the actor out of band, ahead of its mailbox (a /stop for the work in
        hand); True if the actor took it. Runs in the caller's task: it must not await. By default
        no message is taken."""
        return False

    def stop(self) -> None:
        """Ask the actor to stop after the messages already queued; later tells raise ActorStopped."""
        if not self._mailbox.closed:
            self._mailbox.put(_STOP, force=True)
            self._mailbox.close()

    @property
    def queued(self) -> int:
        """Messages waiting in the mailbox."""
        return len(self._mailbox)

    @property
    def idle(self) -> bool:
        """True when nothing is being handled and nothing waits."""
        return not self._busy and not self._mailbox

    @property
    def stopping(self) -> bool:
        """True once the actor takes no more messages."""
        return self._mailbox.closed

    # -- for subclasses --------------------------------------------------------------------------

    async def handle(self, message: M) -> Any:
        """Handle one message; the return value answers an `ask`."""
        raise NotImplementedError

    async def on_start(self) -> None:
        """Load state; runs at the start of every incarnation, so after a crash too."""

    async def on_stop(self) -> None:
        """Release what `on_start` took; runs when the actor stops normally."""

    async def on_dead_letter(self, message: M, error: BaseException) -> None:
        """A message failed twice and is given up; tell whoever needs to know."""

    async def on_given_up(self, messages: list[M]) -> None:
        """The actor crashed past its restart intensity and is given up; `messages` were told to it
        and never handled. Runs as a task of its own (the actor's task is gone): answer them."""
        log.error("actor_given_up_with_messages", actor=self.name, messages=len(messages))

    # -- the task body ---------------------------------------------------------------------------

    async def run(self) -> None:
        """The actor's task: handle messages until stopped. Raises what crashed the incarnation."""
        mailbox = self._mailbox
        await self.on_start()
        while True:
            envelope = await mailbox.get()
            if envelope is _STOP:
                break
            self._busy = True
            try:
                result = await self.handle(envelope.message)
            except asyncio.CancelledError:
                mailbox.push_front(envelope)
                raise
            except Exception as exc:
                envelope.attempts += 1
                if envelope.attempts < 2:
                    mailbox.push_front(envelope)
                    raise
                await self._dead_letter(envelope, exc)
                raise
            else:
                if envelope.reply is not None and not envelope.reply.done():
                    envelope.reply.set_result(result)
            finally:
                self._busy = False
                self.last_active = time.monotonic()
        try:
            await self.on_stop()
        except BaseException:
            # This incarnation took the stop message and the mailbox is closed: put the stop back,
            # or the incarnation a supervisor restarts would wait forever on a mailbox nobody can fill.
            mailbox.push_front(_STOP)
            raise
        self.reject_waiting()

    async def _dead_letter(self, envelope: _Envelope, exc: Exception) -> None:
        log.error(
            "message_dead_lettered",
            actor=self.name,
            message_type=type(envelope.message).__name__,
            error=repr(exc),
        )
        if envelope.reply is not None and not envelope.reply.done():
            poison = PoisonMessage(self.name, envelope.message)
            poison.__cause__ = exc
            envelope.reply.set_exception(poison)
        try:
            await self.on_dead_letter(envelope.message, exc)
        except Exception as report_exc:  # the report failing must not hide the original failure
            log.exception("dead_letter_report_failed", actor=self.name, error=repr(report_exc))

    def reject_waiting(self) -> int:
        """Close the mailbox and answer every waiting ask with ActorStopped; returns how many
        messages were still waiting (tells among them are logged, never silently lost)."""
        left = self._take_waiting()
        if left:
            log.warning("actor_stopped_with_messages", actor=self.name, messages=len(left))
        return len(left)

    def take_waiting(self) -> list[M]:
        """Close the mailbox, answer every waiting ask with ActorStopped, and return the messages
        that were told and never handled (for `on_given_up`), oldest first."""
        return [envelope.message for envelope in self._take_waiting() if envelope.reply is None]

    def _take_waiting(self) -> list[_Envelope]:
        self._mailbox.close()
        left = [envelope for envelope in self._mailbox.drain() if envelope is not _STOP]
        for envelope in left:
            if envelope.reply is not None and not envelope.reply.done():
                envelope.reply.set_exception(ActorStopped(self.name))
        return left
