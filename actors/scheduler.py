"""The scheduler actor: fires reminders at their time, through their conversation's actor.

One task, one timer: it sleeps until the earliest due time the store knows (or until it is woken:
a reminder was made or resumed, a firing finished), then claims each due firing with the store's
compare-and-set (`advance`, which also stores the next occurrence) and tells the conversation's
actor a `ReminderDue`, so the firing is ordered with the chat's messages and recorded in its
history. When the actor has handled it, the firing is `confirm`ed; a firing claimed but never
confirmed (the process died between) is told again at the next start, and the conversation, which
recorded it by its firing id, sends it at most once more (only if the crash fell between Telegram
accepting it and the store recording it). So a firing is never lost, and never doubled outside
that window.

A firing more than `late_after` past its time (the assistant was stopped) says it is late and when
it was due; a repeating reminder then fires once, not once per missed occurrence, and goes on at
its next occurrence after now. A reminder fires one firing at a time: its next firing waits until
the previous one is confirmed. A chat that cannot be reached (the bot was blocked) has its
reminders paused, not retried forever; `/start` there resumes them.

Claims are safe between several schedulers on one store (one wins each firing), but the replay at
start is not: a scheduler that starts hands every unconfirmed firing to its chat again, including
one that another scheduler still has in flight. The assistant runs one scheduler per store; running
several (workers sharing DynamoDB) needs a claim time in the store, so that only firings claimed
longer ago than any handling takes are replayed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from actors import texts
from actors.protocol import FiringOutcome, ReminderDue, ReplyTarget
from actors.runtime import ActorStopped, MailboxFull, PoisonMessage
from ops.backoff import Backoff
from ops.clock import WallClock
from stores import Reminder, ReminderState, ReminderStore, StoreError, firing_id
from stores.reminders import Claim, firing_due
from tools.builtin_reminders import format_local
from tools.schedule import missed_between, next_occurrence, zone_or_utc

__all__ = ["ReminderScheduler", "TellConversation"]

log = structlog.get_logger(__name__)

TellConversation = Callable[[str, ReminderDue], "asyncio.Future[Any]"]
"""Queues a firing for its conversation's actor and returns the future of its answer (a
`FiringOutcome`); raises MailboxFull or ActorStopped when it cannot be queued now."""

_Key = tuple[str, str]


class ReminderScheduler:
    """Fires due reminders (see the module). Run `run()` as a permanent supervised child; `wake()`
    tells it that something may be due sooner than it thought; `stop()` ends `run`.

    `max_sleep` caps a sleep, so reminders that another process made (DynamoDB, several workers)
    and a wall clock that was set are noticed within it.
    """

    def __init__(
        self,
        store: ReminderStore,
        tell: TellConversation,
        *,
        clock: WallClock,
        backoff: Backoff,
        late_after: timedelta = timedelta(minutes=1),
        max_sleep: timedelta = timedelta(minutes=1),
        stop_grace_seconds: float = 2.0,
    ) -> None:
        self._store = store
        self._tell = tell
        self._clock = clock
        self._backoff = backoff
        self._late_after = late_after
        self._max_sleep = max_sleep
        self._stop_grace = stop_grace_seconds
        self._woken = asyncio.Event()
        self._hint: datetime | None = None
        self._in_flight: dict[_Key, str] = {}
        self._answers: set[asyncio.Future[Any]] = set()
        self._to_confirm: list[tuple[str, str, str]] = []
        self._confirmer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._closed = False
        self.fired = 0
        """Firings handed to conversations since start (claimed or replayed)."""

    # -- for other tasks -------------------------------------------------------------------------

    def wake(self, due: datetime | None = None) -> None:
        """Something may be due at `due` (a reminder was made or resumed), or should be looked at now."""
        if due is not None and (self._hint is None or due < self._hint):
            self._hint = due
        self._woken.set()

    def stop(self) -> None:
        """End `run` after the step in progress. Firings in flight are finished by their actors:
        `run` waits `stop_grace_seconds` for them and confirms them; one that takes longer is told
        again at the next start (where its conversation knows whether it was sent)."""
        self._stopping = True
        self._woken.set()

    @property
    def in_flight(self) -> int:
        """Firings told to conversations and not yet confirmed."""
        return len(self._in_flight)

    # -- the task body ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Replay unconfirmed firings, then fire reminders as they fall due, until stopped."""
        self._closed = False  # a restart after a crash; a stop asked for before this still holds
        failures = 0
        replayed = False
        try:
            while not self._stopping:
                try:
                    if not replayed:
                        await self._replay_unconfirmed()
                        replayed = True
                    deadline = await self._step()
                    failures = 0
                except StoreError as exc:
                    # A store outage must not end the scheduler (nor, past its restarts, the process).
                    failures += 1
                    delay = self._backoff.delay(failures)
                    log.error("scheduler_store_failed", error=repr(exc), retry_in_s=round(delay, 3))
                    deadline = self._clock.now() + timedelta(seconds=delay)
                await self._sleep_until(deadline)
        except asyncio.CancelledError:
            for task in list(self._tasks):
                task.cancel()
            raise
        else:
            await self._await_in_flight()
        finally:
            await self._drain_tasks()
            # Firings that finish after this are confirmed at the next start (their conversations
            # recorded them, so they are not sent again): nothing may run here after `run` returns.
            self._closed = True
            self._in_flight.clear()

    async def _step(self) -> datetime:
        """Fire what is due now; return when to look again."""
        self._woken.clear()
        now = self._clock.now()
        claimed, lost = await self._fire_due(now)
        earliest = await self._store.next_due()
        hint, self._hint = self._hint, None
        wake_at = min((moment for moment in (earliest, hint) if moment is not None), default=None)
        latest = now + self._max_sleep
        if wake_at is None or wake_at > latest:
            return latest
        if wake_at > now:
            return wake_at
        if claimed:
            return now  # more may have fallen due meanwhile
        if lost:
            # Another worker claimed them; an index may lag its table for a moment: look again soon.
            return now + timedelta(milliseconds=100)
        # Only firings still in flight are due: their confirmation wakes us.
        return latest

    async def _sleep_until(self, deadline: datetime) -> None:
        if self._stopping or self._woken.is_set():
            return
        if deadline > self._clock.now():
            await self._clock.sleep_until(deadline, self._woken)

    async def _fire_due(self, now: datetime) -> tuple[int, int]:
        """Claim every due firing (one at a time per reminder) in one store call, and tell the won ones."""
        due = [item for item in await self._store.due(now) if (item.conversation_id, item.id) not in self._in_flight]
        if not due or self._stopping:
            return 0, 0
        plans = [self._plan(reminder, now) for reminder in due]
        won = await self._store.advance_many([claim for claim, _ in plans])
        for reminder, (_, late), claimed in zip(due, plans, won, strict=True):
            if claimed:
                self._dispatch(reminder, firing_id(reminder.id, reminder.next_due), late)
            else:
                log.debug("firing_claimed_elsewhere", reminder_id=reminder.id)
        return sum(won), len(won) - sum(won)

    def _plan(self, reminder: Reminder, now: datetime) -> tuple[Claim, str]:
        """The claim of a reminder's due firing (with its next occurrence), and its late note."""
        due = reminder.next_due
        zone = zone_or_utc(reminder.timezone)
        late = now - due > self._late_after
        following: datetime | None = None
        missed = 0
        if reminder.repeat is not None:
            # A late repeating reminder fires once, then goes on at its next occurrence after now.
            following = next_occurrence(reminder.repeat, zone, now if late else due)
            if late:
                missed = missed_between(reminder.repeat, zone, due, now)
            if following is None:
                log.warning("reminder_rule_ends", reminder_id=reminder.id, repeat=reminder.repeat)
        claim = Claim(reminder.conversation_id, reminder.id, due, following)
        return claim, self._late_note(due, now, zone, reminder.repeat, missed)

    async def _replay_unconfirmed(self) -> None:
        """Firings claimed before a crash and never confirmed go to their conversations again."""
        now = self._clock.now()
        pending = await self._store.unconfirmed()
        if pending:
            log.info("firings_replayed", count=len(pending))
        for reminder in pending:
            firing = reminder.unconfirmed_firing
            if firing is None or (reminder.conversation_id, reminder.id) in self._in_flight:
                continue
            due = firing_due(firing)
            zone = zone_or_utc(reminder.timezone)
            self._dispatch(reminder, firing, self._late_note(due, now, zone, None, 0))

    def _late_note(self, due: datetime, now: datetime, zone: ZoneInfo, repeat: str | None, missed: int) -> str:
        if now - due <= self._late_after:
            return ""
        when = format_local(due, zone)
        if repeat is not None and missed:
            return texts.REMINDER_LATE_REPEATING.format(due=when, missed=missed)
        return texts.REMINDER_LATE.format(due=when)

    # -- handing firings to conversations ----------------------------------------------------------

    def _dispatch(self, reminder: Reminder, firing: str, late: str, attempt: int = 0) -> None:
        key = (reminder.conversation_id, reminder.id)
        self._in_flight[key] = firing
        target = ReplyTarget(reminder.target.chat_id, reminder.target.thread_id)
        message = ReminderDue(
            reminder.conversation_id, firing, reminder.text, target, reminder.user_id or None, reminder.run, late
        )
        try:
            answer = self._tell(reminder.conversation_id, message)
        except (MailboxFull, ActorStopped) as exc:
            self._retry_later(reminder, firing, late, attempt, exc)
            return
        self.fired += 1
        self._answers.add(answer)
        answer.add_done_callback(self._answers.discard)
        answer.add_done_callback(functools.partial(self._answered, reminder, firing, late, attempt))

    def _answered(self, reminder: Reminder, firing: str, late: str, attempt: int, answer: asyncio.Future[Any]) -> None:
        if answer.cancelled():
            self._in_flight.pop((reminder.conversation_id, reminder.id), None)
            return
        error = answer.exception()
        if self._closed:
            return
        if isinstance(error, ActorStopped):
            self._retry_later(reminder, firing, late, attempt, error)
            return
        outcome: FiringOutcome = "sent"
        if isinstance(error, PoisonMessage):
            log.error("firing_dead_lettered", reminder_id=reminder.id, firing_id=firing)
        elif error is not None:
            log.error("firing_failed", reminder_id=reminder.id, firing_id=firing, error=repr(error))
        else:
            outcome = answer.result()
        if outcome == "undeliverable":
            self._spawn(self._pause_then_confirm(reminder, firing), f"pause:{firing}")
        else:
            self._confirm_later(reminder.conversation_id, reminder.id, firing)

    def _retry_later(self, reminder: Reminder, firing: str, late: str, attempt: int, exc: Exception) -> None:
        if self._stopping:
            # Left unconfirmed: the next start tells it again.
            self._in_flight.pop((reminder.conversation_id, reminder.id), None)
            log.info("firing_deferred", reminder_id=reminder.id, firing_id=firing)
            return
        delay = self._backoff.delay(attempt + 1)
        log.warning("firing_retry", reminder_id=reminder.id, firing_id=firing, error=repr(exc), wait_s=round(delay, 3))

        async def again() -> None:
            await self._clock.sleep(delay)
            if self._stopping:
                self._in_flight.pop((reminder.conversation_id, reminder.id), None)
                return
            self._dispatch(reminder, firing, late, attempt + 1)

        self._spawn(again(), f"retry:{firing}")

    async def _pause_then_confirm(self, reminder: Reminder, firing: str) -> None:
        try:
            await self._pause_chat(reminder.conversation_id)
        finally:
            self._confirm_later(reminder.conversation_id, reminder.id, firing)

    def _confirm_later(self, conversation_id: str, reminder_id: str, firing: str) -> None:
        """Queue a confirmation: one task writes them in batches (one `fsync` per batch, however
        many firings finished meanwhile)."""
        self._to_confirm.append((conversation_id, reminder_id, firing))
        if self._confirmer is None or self._confirmer.done():
            self._confirmer = self._spawn(self._confirm_batches(), "confirm")

    async def _confirm_batches(self) -> None:
        while self._to_confirm:
            batch, self._to_confirm = self._to_confirm, []
            try:
                for attempt in range(1, 4):
                    try:
                        await self._store.confirm_many(batch)
                        break
                    except StoreError as exc:
                        # Unconfirmed only means told again at the next start, where the history skips it.
                        log.warning("firing_confirm_failed", firings=len(batch), attempt=attempt, error=repr(exc))
                        await self._clock.sleep(self._backoff.delay(attempt))
            finally:
                for conversation_id, reminder_id, _ in batch:
                    self._in_flight.pop((conversation_id, reminder_id), None)
                self.wake()  # the next firings of these reminders may be due already

    async def _pause_chat(self, conversation_id: str) -> None:
        paused = [
            reminder.id
            for reminder in await self._store.list_for_conversation(conversation_id)
            if reminder.state is ReminderState.ACTIVE and await self._store.pause(conversation_id, reminder.id)
        ]
        log.warning("reminders_paused", conversation_id=conversation_id, reminders=paused, reason="undeliverable")

    async def _await_in_flight(self) -> None:
        """On a clean stop: give the actors a moment to finish the firings they hold, so they are
        confirmed now rather than told again at the next start."""
        pending = [answer for answer in self._answers if not answer.done()]
        if pending:
            await asyncio.wait(pending, timeout=self._stop_grace)
        confirming = [task for task in self._tasks if task.get_name().startswith(("confirm", "pause:"))]
        if confirming:
            await asyncio.wait(confirming, timeout=self._stop_grace)
        if self._confirmer is not None and not self._confirmer.done():
            await asyncio.wait([self._confirmer], timeout=self._stop_grace)

    # -- owned tasks -------------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler_task_failed", task=task.get_name(), error=repr(task.exception()))

    async def _drain_tasks(self) -> None:
        """Let confirmations in progress finish (briefly); cancel retries that wait."""
        for task in list(self._tasks):
            if task.get_name().startswith("retry:"):
                task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
