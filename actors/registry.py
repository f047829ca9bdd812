"""The registry: one conversation actor per id, spawned on first use and evicted when idle."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import structlog

from actors.runtime import Actor
from actors.supervisor import Supervisor
from ops.aio import wait_event

__all__ = ["ConversationRegistry"]

log = structlog.get_logger(__name__)

A = TypeVar("A", bound=Actor[Any])

BUSY_FLOOR = 16
"""Busy actors below which a busy CPU does not hold `wait_for_room`: that much work keeps it busy
through a hold (a hold while fewer were busy could leave it idle)."""
SATURATED_SHARE = 0.7
"""The share of one CPU the process used over `LOAD_WINDOW_SECONDS` from which it counts as busy."""
LOAD_WINDOW_SECONDS = 0.05
ROOM_CHECK_SECONDS = 0.02


class ConversationRegistry(Generic[A]):
    """Routes messages to the actor of their conversation, creating it on demand.

    Lookup-and-insert is one synchronous step, and so is eviction (check idle, close the mailbox,
    remove from the map), so there is never a second activation of an id, and a message that
    races an eviction finds no actor and goes to a fresh activation instead of being dropped.
    Actors are transient children of the registry's own supervisor: a crash restarts one from
    the store; past its restart intensity it is given up, and the next message starts it afresh.

    At most `max_idle` actors are kept once idle, and `max_live` in all: past either, spawning
    evicts the least recently active idle ones (down to three quarters of the limit, so that one
    sorted pass makes room for a quarter), so a burst of many chats holds few conversations in
    memory, not one per chat until `idle_seconds` pass. Busy actors are never evicted;
    `wait_for_room` holds a poller while `max_live` of them are busy, or while many are and the
    CPU is saturated.
    """

    def __init__(
        self,
        factory: Callable[[str], A],
        supervisor: Supervisor,
        *,
        idle_seconds: float,
        on_count_changed: Callable[[int], None] | None = None,
        after_evictions: Callable[[], None] | None = None,
        max_live: int | None = None,
        max_idle: int | None = None,
    ) -> None:
        self._factory = factory
        self._supervisor = supervisor
        self._idle_seconds = idle_seconds
        self._actors: dict[str, A] = {}
        self._on_count_changed = on_count_changed
        self._after_evictions = after_evictions
        self._max_live = max_live
        self._max_idle = max_idle
        self._room_check_at = 0.0
        """The number of live actors at which spawning looks for idle ones to evict (`_make_room`)."""
        self._plan_room_check()
        self._release_due = False
        """Actors were evicted since `after_evictions` last ran."""
        self._load = (time.monotonic(), time.process_time(), False)
        """When the CPU time was last read, what it was, and whether the process kept a CPU busy."""
        self._closed = False
        self._stopped = asyncio.Event()
        self.spawned = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._actors)

    def __iter__(self) -> Iterator[A]:
        return iter(list(self._actors.values()))

    def get(self, conversation_id: str) -> A | None:
        """The live actor of a conversation, if there is one."""
        return self._actors.get(conversation_id)

    def actor_for(self, conversation_id: str) -> A:
        """The conversation's actor, spawned now if it has none. Raises ActorStopped when the
        registry is stopping."""
        actor = self._actors.get(conversation_id)
        if actor is not None and not actor.stopping:
            return actor
        if self._closed:
            from actors.runtime import ActorStopped

            raise ActorStopped(f"conversation:{conversation_id}")
        if len(self._actors) >= self._room_check_at:
            self._make_room()
        actor = self._factory(conversation_id)
        self._actors[conversation_id] = actor
        self.spawned += 1
        self._supervisor.start_child(
            f"conversation:{conversation_id}:{self.spawned}",
            actor.run,
            restart="transient",
            stop=actor.stop,
            on_exit=functools.partial(self._on_exit, conversation_id, actor),
        )
        self._count_changed()
        return actor

    def tell(self, conversation_id: str, message: Any) -> None:
        """Queue a message for the conversation. Raises MailboxFull (answer "busy") or ActorStopped
        (the system is stopping); never waits."""
        self.actor_for(conversation_id).tell(message)

    def interrupt(self, conversation_id: str, message: Any) -> bool:
        """Hand `message` to the conversation's live actor out of band, not queued behind what it is
        doing (see Actor.interrupt); False if it has no live actor or did not take it. Never spawns."""
        actor = self._actors.get(conversation_id)
        return actor is not None and not actor.stopping and actor.interrupt(message)

    async def ask(self, conversation_id: str, message: Any, timeout: float | None = None) -> Any:
        """Queue a message for the conversation and wait for its answer (see Actor.ask)."""
        return await self.actor_for(conversation_id).ask(message, timeout)

    def _on_exit(self, conversation_id: str, actor: A, exc: BaseException | None) -> None:
        if self._actors.get(conversation_id) is actor:
            del self._actors[conversation_id]
        if exc is not None:
            log.error("conversation_actor_given_up", conversation_id=conversation_id, error=repr(exc))
        if exc is None or self._closed:
            actor.reject_waiting()  # stopping: what waits stays pending in the ingress log
        else:
            self._give_up(conversation_id, actor)
        self._count_changed()

    def _give_up(self, conversation_id: str, actor: A) -> None:
        """Hand what was told to a given-up actor to its `on_given_up`, as a task of the supervisor:
        an acknowledged message is never dropped without an answer."""
        left = actor.take_waiting()
        if not left:
            return
        try:
            self._supervisor.start_child(
                f"given-up:{conversation_id}:{self.spawned}",
                functools.partial(actor.on_given_up, left),
                restart="temporary",
            )
        except RuntimeError:  # the supervisor is stopping: the messages stay pending for the next start
            log.warning("given_up_messages_deferred", conversation_id=conversation_id, messages=len(left))

    def _count_changed(self) -> None:
        if self._on_count_changed is not None:
            self._on_count_changed(len(self._actors))

    def evict_idle(self, now: float | None = None) -> int:
        """Stop every actor idle for `idle_seconds`; returns how many. One synchronous step each."""
        now = time.monotonic() if now is None else now
        return self._evict(
            [
                conversation_id
                for conversation_id, actor in self._actors.items()
                if actor.idle and not actor.stopping and now - actor.last_active >= self._idle_seconds
            ]
        )

    def _make_room(self) -> None:
        """Evict the least recently active idle actors past the limits: idle ones down to 3/4 of
        `max_idle`, and, once `max_live` are live, all down to 3/4 of it (as far as idle ones go)."""
        idle = [(actor.last_active, key) for key, actor in self._actors.items() if actor.idle and not actor.stopping]
        excess = 0 if self._max_idle is None else len(idle) - self._max_idle * 3 // 4
        if self._max_live is not None and len(self._actors) >= self._max_live:
            excess = max(excess, len(self._actors) - self._max_live * 3 // 4)
        if excess > 0:
            idle.sort()
            self._evict([key for _, key in idle[:excess]])
        self._plan_room_check()

    def _plan_room_check(self) -> None:
        """Look again once a quarter of `max_idle` more actors are live, or at `max_live`."""
        check_at = math.inf
        if self._max_idle is not None:
            check_at = len(self._actors) + max(1, self._max_idle // 4)
        if self._max_live is not None:
            check_at = min(check_at, self._max_live)
        self._room_check_at = check_at

    def _evict(self, conversation_ids: list[str]) -> int:
        for conversation_id in conversation_ids:
            self._actors.pop(conversation_id).stop()
        if conversation_ids:
            self.evicted += len(conversation_ids)
            self._release_due = True
            self._plan_room_check()
            log.debug("conversation_actors_evicted", count=len(conversation_ids), alive=len(self._actors))
            self._count_changed()
        return len(conversation_ids)

    def busy_count(self) -> int:
        """How many live actors are handling a message or have one waiting."""
        return sum(not actor.idle for actor in self._actors.values())

    async def wait_for_room(self, stopping: asyncio.Event, on_hold: Callable[[], None]) -> None:
        """Return once more work may be taken (at once, mostly). Wait, calling `on_hold` at each look,
        while `max_live` actors are busy, or while `BUSY_FLOOR` are and the process keeps a CPU busy
        (`SATURATED_SHARE` of the last `LOAD_WINDOW_SECONDS`): more turns than the CPU runs at once
        only wait in memory, each with its request, buffers and actor. Turns that wait on a slow model
        leave the CPU idle, so they are taken up to `max_live`."""
        max_live = self._max_live
        while max_live is not None and not stopping.is_set():
            busy = self.busy_count()
            if busy < max_live and (busy < BUSY_FLOOR or not self._cpu_saturated()):
                return
            on_hold()
            await wait_event(stopping, ROOM_CHECK_SECONDS)

    def _cpu_saturated(self) -> bool:
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu, saturated = self._load
        if wall - last_wall >= LOAD_WINDOW_SECONDS:
            saturated = (cpu - last_cpu) / (wall - last_wall) >= SATURATED_SHARE
            self._load = (wall, cpu, saturated)
        return saturated

    async def run_evictions(self) -> None:
        """The sweeper's task: evict idle actors every so often until stopped. `after_evictions`
        runs on a sweep after evictions (when the evicted actors' tasks have ended) once no live
        actor is busy: a burst's evictions are released when it is over, not during it (each
        release costs a full garbage collection, tens of ms of the loop, while turns wait)."""
        interval = max(0.01, min(self._idle_seconds / 4, 30.0))
        while not await wait_event(self._stopped, interval):
            if self._release_due and self._after_evictions is not None and not self.busy():
                self._after_evictions()
                self._release_due = False
            self.evict_idle()

    def busy(self) -> bool:
        """True while some live actor is handling a message or has one waiting."""
        return any(not actor.idle for actor in self._actors.values())

    def stop_sweeper(self) -> None:
        """Make `run_evictions` return."""
        self._stopped.set()

    async def stop(self, grace_seconds: float) -> None:
        """Take no new conversations, let every actor finish what it was told (within the grace
        period), then cancel the rest; queued asks are answered with ActorStopped."""
        self._closed = True
        self.stop_sweeper()
        await self._supervisor.stop_all_at_once(grace_seconds)
