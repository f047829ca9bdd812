"""The ConversationRegistry: lazy spawn, idle eviction, eviction races, crashes and graceful stop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors.registry import ConversationRegistry
from actors.runtime import Actor, ActorStopped, MailboxFull
from actors.supervisor import Supervisor
from conf import BackoffSettings

FAST = BackoffSettings(initial_seconds=0.001, max_seconds=0.01, jitter_seconds=0)
IDLE = 60.0
LATER = IDLE + 1.0  # add to time.monotonic() to pass `now` past every actor's idle limit


class Boom(Exception):
    """The failure a test injects into a handler."""


class World:
    """What outlives activations, like the conversation store: what was handled, by which
    activation, and how many activations each conversation had."""

    def __init__(self) -> None:
        self.handled: dict[str, list[Any]] = {}
        self.activations: dict[str, int] = {}
        self.starts: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.max_running = 0
        self.attempts: dict[int, int] = {}


class Conversation(Actor[Any]):
    """A conversation actor over `World`: ("crash", n) fails its first n attempts, ("slow", started,
    release) signals and waits; anything else is recorded and echoed."""

    def __init__(self, conversation_id: str, world: World, mailbox_size: int = 8) -> None:
        super().__init__(f"conversation:{conversation_id}", mailbox_size)
        self.conversation_id = conversation_id
        self.world = world
        world.activations[conversation_id] = world.activations.get(conversation_id, 0) + 1
        self.activation = world.activations[conversation_id]

    async def on_start(self) -> None:
        self.world.starts[self.conversation_id] = self.world.starts.get(self.conversation_id, 0) + 1

    async def handle(self, message: Any) -> Any:
        world = self.world
        world.running[self.conversation_id] = world.running.get(self.conversation_id, 0) + 1
        world.max_running = max(world.max_running, world.running[self.conversation_id])
        try:
            if isinstance(message, tuple) and message[0] == "crash":
                world.attempts[id(message)] = world.attempts.get(id(message), 0) + 1
                if world.attempts[id(message)] <= message[1]:
                    raise Boom("injected")
            if isinstance(message, tuple) and message[0] == "slow":
                message[1].set()
                await message[2].wait()
            world.handled.setdefault(self.conversation_id, []).append(message)
            return (self.activation, message)
        finally:
            world.running[self.conversation_id] -= 1


def make_registry(
    world: World,
    *,
    max_restarts: int = 10,
    mailbox_size: int = 8,
    counts: list[int] | None = None,
    max_live: int | None = None,
    max_idle: int | None = None,
) -> ConversationRegistry[Conversation]:
    supervisor = Supervisor("conversations", backoff=FAST, max_restarts=max_restarts, window_seconds=60)
    return ConversationRegistry(
        lambda conversation_id: Conversation(conversation_id, world, mailbox_size),
        supervisor,
        idle_seconds=IDLE,
        on_count_changed=None if counts is None else counts.append,
        max_live=max_live,
        max_idle=max_idle,
    )


def no_other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


# -- spawning ----------------------------------------------------------------------------------------


async def test_an_actor_is_spawned_on_the_first_message_and_reused_after() -> None:
    world = World()
    counts: list[int] = []
    registry = make_registry(world, counts=counts)
    assert registry.get("a") is None
    assert len(registry) == 0
    assert await registry.ask("a", 1) == (1, 1)
    first = registry.get("a")
    assert first is not None
    assert await registry.ask("a", 2) == (1, 2)
    assert registry.get("a") is first
    assert await registry.ask("b", 3) == (1, 3)
    assert world.activations == {"a": 1, "b": 1}
    assert registry.spawned == 2
    assert counts == [1, 2]
    assert set(registry) == {first, registry.get("b")}
    await registry.stop(1.0)
    assert no_other_tasks() == set()


async def test_many_messages_at_once_make_one_activation_that_handles_them_in_order() -> None:
    world = World()
    registry = make_registry(world, mailbox_size=100)
    replies = [registry.actor_for("a").ask_future(index) for index in range(50)]
    for index in range(50, 60):
        registry.tell("a", index)
    await asyncio.gather(*replies)
    await registry.stop(1.0)
    assert world.activations == {"a": 1}
    assert world.handled["a"] == list(range(60))
    assert world.max_running == 1, "one message at a time per conversation"


async def test_a_slow_conversation_does_not_delay_another() -> None:
    world = World()
    registry = make_registry(world)
    started, release = asyncio.Event(), asyncio.Event()
    slow = asyncio.ensure_future(registry.ask("slow", ("slow", started, release)))
    await started.wait()
    assert await registry.ask("fast", "hi") == (1, "hi")
    assert not slow.done()
    release.set()
    await slow
    await registry.stop(1.0)


async def test_a_full_mailbox_answers_busy_at_once() -> None:
    world = World()
    registry = make_registry(world, mailbox_size=2)
    started, release = asyncio.Event(), asyncio.Event()
    registry.tell("a", ("slow", started, release))
    await started.wait()
    registry.tell("a", 1)
    registry.tell("a", 2)
    with pytest.raises(MailboxFull):
        registry.tell("a", 3)
    with pytest.raises(MailboxFull):
        await registry.ask("a", 4, timeout=10)
    release.set()
    await registry.stop(1.0)
    assert world.handled["a"][1:] == [1, 2]


# -- eviction ----------------------------------------------------------------------------------------


async def test_an_idle_actor_is_evicted_only_after_idle_seconds() -> None:
    world = World()
    counts: list[int] = []
    registry = make_registry(world, counts=counts)
    await registry.ask("a", 1)
    actor = registry.get("a")
    assert actor is not None
    assert registry.evict_idle(now=actor.last_active + IDLE - 0.001) == 0
    assert registry.get("a") is actor
    assert registry.evict_idle(now=actor.last_active + IDLE) == 1
    assert registry.get("a") is None
    assert actor.stopping
    assert registry.evicted == 1
    assert counts == [1, 0]
    await registry.stop(1.0)
    assert no_other_tasks() == set()


async def test_a_busy_actor_or_one_with_queued_messages_is_not_evicted() -> None:
    world = World()
    registry = make_registry(world)
    started, release = asyncio.Event(), asyncio.Event()
    registry.tell("busy", ("slow", started, release))
    await started.wait()
    registry.tell("queued", "waiting")  # spawned, but its task has not taken the message yet
    assert registry.evict_idle(now=time.monotonic() + LATER) == 0
    release.set()
    await registry.ask("busy", "done")
    await registry.ask("queued", "done")
    assert registry.evict_idle(now=time.monotonic() + LATER) == 2
    await registry.stop(1.0)


async def test_a_message_racing_an_eviction_reaches_a_new_activation() -> None:
    world = World()
    registry = make_registry(world)
    await registry.ask("a", "first")
    old = registry.get("a")
    assert old is not None
    registry.evict_idle(now=time.monotonic() + LATER)
    assert old.stopping
    with pytest.raises(ActorStopped):
        old.tell("stale reference")  # a held reference is refused loudly, never dropped
    assert await registry.ask("a", "second") == (2, "second")
    assert world.handled["a"] == ["first", "second"]
    assert world.starts["a"] == 2, "the fresh activation loaded its state"
    assert world.max_running == 1
    await registry.stop(1.0)
    assert no_other_tasks() == set()


async def test_past_max_live_the_least_recently_active_idle_actors_make_room() -> None:
    world = World()
    registry = make_registry(world, max_live=4)
    for chat in ("a", "b", "c", "d", "a"):  # "a" spoke again: "b" is now the least recently active
        await registry.ask(chat, f"to {chat}")
    assert registry.evicted == 0
    assert await registry.ask("e", "to e") == (1, "to e")
    # Down to three quarters of max_live before the new one: one left, the one quiet for longest.
    assert registry.get("b") is None
    assert [chat for chat in "acde" if registry.get(chat) is not None] == list("acde")
    assert registry.evicted == 1
    # An early eviction loses nothing: the next message starts a fresh activation from the store.
    assert await registry.ask("b", "again") == (2, "again")
    assert world.handled["b"] == ["to b", "again"]
    await registry.stop(1.0)
    assert no_other_tasks() == set()


async def test_past_max_idle_the_least_recently_active_idle_actors_go_and_busy_ones_stay() -> None:
    world = World()
    registry = make_registry(world, max_idle=4)
    started, release = asyncio.Event(), asyncio.Event()
    registry.tell("busy", ("slow", started, release))
    await started.wait()
    for chat in ("a", "b", "c", "a", "d"):  # "a" spoke again: "b" is now the least recently active
        await registry.ask(chat, f"to {chat}")
    assert registry.evicted == 0  # four idle and one busy: within max_idle
    assert await registry.ask("e", "to e") == (1, "to e")
    # Spawning "e" found four idle: down to three quarters of max_idle, the one quiet for longest went.
    assert registry.get("b") is None
    assert [chat for chat in ("busy", "a", "c", "d", "e") if registry.get(chat) is not None] == [
        "busy",
        "a",
        "c",
        "d",
        "e",
    ]
    assert registry.evicted == 1
    release.set()
    assert await registry.ask("b", "again") == (2, "again")  # a fresh activation, nothing lost
    assert world.handled["b"] == ["to b", "again"]
    await registry.stop(1.0)
    assert no_other_tasks() == set()


async def test_busy_actors_are_never_evicted_for_room_and_a_poller_waits_while_max_live_are_busy() -> None:
    world = World()
    registry = make_registry(world, max_live=2)
    never, holds = asyncio.Event(), asyncio.Event()
    await asyncio.wait_for(registry.wait_for_room(never, pytest.fail), 5)  # room: no hold at all
    gates = {chat: (asyncio.Event(), asyncio.Event()) for chat in ("a", "b")}
    for chat, (started, release) in gates.items():
        registry.tell(chat, ("slow", started, release))
        await started.wait()
    waiting = asyncio.create_task(registry.wait_for_room(never, holds.set))
    await asyncio.wait_for(holds.wait(), 5)  # two busy of two: the poller is held
    assert await asyncio.wait_for(registry.ask("c", "still served"), 5) == (1, "still served")
    assert registry.evicted == 0  # nobody idle to make room with: none evicted
    assert len(registry) == 3
    assert not waiting.done()
    gates["a"][1].set()
    await asyncio.wait_for(waiting, 5)  # one busy ("b") of two: room again
    assert registry.busy_count() == 1
    gates["b"][1].set()
    await registry.ask("b", "after")
    await registry.stop(1.0)


async def test_with_many_chats_busy_a_poller_waits_while_the_cpu_is_saturated() -> None:
    from actors.registry import BUSY_FLOOR, LOAD_WINDOW_SECONDS

    world = World()
    registry = make_registry(world, max_live=10 * BUSY_FLOOR)
    gates = [(asyncio.Event(), asyncio.Event()) for _ in range(BUSY_FLOOR)]
    for index, (started, release) in enumerate(gates):
        registry.tell(f"chat {index}", ("slow", started, release))
        await started.wait()
    quiet = asyncio.Event()
    await asyncio.wait_for(registry.wait_for_room(quiet, lambda: None), 5)  # the CPU is quiet: room
    # A thread that keeps a CPU busy without the GIL (hashlib releases it for large buffers): the
    # process is saturated, as when more turns are in flight than the CPU runs.
    done_hogging = threading.Event()

    def hog() -> None:
        data = bytes(1 << 20)
        while not done_hogging.is_set():
            hashlib.sha256(data).digest()

    hogger = threading.Thread(target=hog, name="cpu-hog")
    hogger.start()
    await asyncio.sleep(2 * LOAD_WINDOW_SECONDS)  # the load is read over a window: let one pass
    holds: list[float] = []
    held_long = asyncio.Event()

    def on_hold() -> None:
        holds.append(time.monotonic())
        if len(holds) >= 10:
            held_long.set()

    try:
        waiting = asyncio.create_task(registry.wait_for_room(asyncio.Event(), on_hold))
        await asyncio.wait_for(held_long.wait(), 10)
        assert not waiting.done()
    finally:
        done_hogging.set()
        hogger.join()
    await asyncio.wait_for(waiting, 5)  # the CPU is free again: room, though as many chats are busy
    assert registry.busy_count() == BUSY_FLOOR
    for _, release in gates:
        release.set()
    await registry.stop(1.0)


async def test_the_sweeper_evicts_idle_actors_until_stopped() -> None:
    world = World()
    evicted = asyncio.Event()

    def on_count(count: int) -> None:
        if count == 0:
            evicted.set()

    supervisor = Supervisor("conversations", backoff=FAST, max_restarts=3, window_seconds=60)
    registry = ConversationRegistry(
        lambda cid: Conversation(cid, world), supervisor, idle_seconds=0.01, on_count_changed=on_count
    )
    sweeper = asyncio.create_task(registry.run_evictions(), name="sweeper")
    await registry.ask("a", 1)
    async with asyncio.timeout(5):
        await evicted.wait()
    assert registry.evicted == 1
    registry.stop_sweeper()
    await sweeper
    await registry.stop(1.0)
    assert no_other_tasks() == set()


# -- crashes -----------------------------------------------------------------------------------------


async def test_a_crash_restarts_the_actor_which_retries_the_message_first() -> None:
    world = World()
    registry = make_registry(world)
    flaky = ("crash", 1)
    reply = registry.actor_for("a").ask_future(flaky)
    registry.tell("a", "after")
    assert await reply == (1, flaky), "the same activation, restarted by its supervisor"
    assert await registry.ask("a", "last") == (1, "last")
    assert world.handled["a"] == [flaky, "after", "last"]
    assert world.starts["a"] == 2
    await registry.stop(1.0)


async def test_a_poison_message_is_dead_lettered_and_the_conversation_goes_on() -> None:
    from actors.runtime import PoisonMessage

    world = World()
    registry = make_registry(world)
    with capture_logs() as logs:
        with pytest.raises(PoisonMessage):
            await registry.ask("a", ("crash", 99))
        assert await registry.ask("a", "next") == (1, "next")
    assert [line["event"] for line in logs].count("message_dead_lettered") == 1
    await registry.stop(1.0)


async def test_an_actor_given_up_after_its_intensity_answers_queued_asks_and_respawns_on_demand() -> None:
    world = World()
    registry = make_registry(world, max_restarts=0)
    started, release = asyncio.Event(), asyncio.Event()
    registry.tell("a", ("slow", started, release))
    await started.wait()
    actor = registry.get("a")
    assert actor is not None
    flaky = actor.ask_future(("crash", 1))
    queued = actor.ask_future("queued")
    with capture_logs() as logs:
        release.set()
        with pytest.raises(ActorStopped):
            await flaky
        with pytest.raises(ActorStopped):
            await queued
    assert "conversation_actor_given_up" in [line["event"] for line in logs]
    assert registry.get("a") is None
    assert await registry.ask("a", "again") == (2, "again")
    await registry.stop(1.0)


# -- stop ------------------------------------------------------------------------------------------


async def test_stop_lets_running_and_queued_work_finish_then_refuses_new_work() -> None:
    world = World()
    registry = make_registry(world)
    started, release = asyncio.Event(), asyncio.Event()
    running = registry.actor_for("a").ask_future(("slow", started, release))
    queued = registry.actor_for("a").ask_future("queued")
    registry.tell("b", "told")
    await started.wait()
    stopping = asyncio.create_task(registry.stop(5.0))
    await asyncio.sleep(0)
    with pytest.raises(ActorStopped):
        registry.tell("a", "too late")
    with pytest.raises(ActorStopped):
        registry.tell("new", "too late")
    release.set()
    await stopping
    assert (await running)[0] == 1
    assert await queued == (1, "queued")
    assert world.handled == {"a": [("slow", started, release), "queued"], "b": ["told"]}
    assert len(registry) == 0
    assert no_other_tasks() == set()


async def test_stop_cancels_work_past_the_grace_period_and_answers_what_waited() -> None:
    world = World()
    registry = make_registry(world)
    started, never = asyncio.Event(), asyncio.Event()
    running = registry.actor_for("a").ask_future(("slow", started, never))
    queued = registry.actor_for("a").ask_future("queued")
    await started.wait()
    with capture_logs() as logs:
        await registry.stop(0.01)
    for reply in (running, queued):
        with pytest.raises(ActorStopped):
            await reply
    events = [line["event"] for line in logs]
    assert "child_stop_timed_out" in events
    assert "actor_stopped_with_messages" in events
    assert no_other_tasks() == set()


async def test_stop_also_waits_for_evicted_activations_still_finishing() -> None:
    world = World()
    stopped = asyncio.Event()

    class SlowStop(Conversation):
        async def on_stop(self) -> None:
            await asyncio.sleep(0.01)
            stopped.set()

    supervisor = Supervisor("conversations", backoff=FAST, max_restarts=3, window_seconds=60)
    registry = ConversationRegistry(lambda cid: SlowStop(cid, world), supervisor, idle_seconds=IDLE)
    await registry.ask("a", 1)
    registry.evict_idle(now=time.monotonic() + LATER)
    await registry.stop(1.0)
    assert stopped.is_set()
    assert no_other_tasks() == set()


async def test_the_sweep_after_evictions_runs_the_release_hook_once() -> None:
    from actors.supervisor import Supervisor
    from conf import BackoffSettings

    released = asyncio.Event()
    calls: list[int] = []

    class Quiet(Actor[str]):
        async def handle(self, message: str) -> str:
            return message

    def release() -> None:
        calls.append(len(registry))
        released.set()

    supervisor = Supervisor("c", backoff=BackoffSettings(initial_seconds=0.001), max_restarts=3, window_seconds=10)
    registry: ConversationRegistry[Quiet] = ConversationRegistry(
        lambda cid: Quiet(cid, 8), supervisor, idle_seconds=0.04, after_evictions=release
    )
    sweeper = asyncio.create_task(registry.run_evictions())
    assert await registry.ask("a", "hi") == "hi"
    await asyncio.wait_for(released.wait(), 5)
    assert calls == [0]  # the actor was gone by the sweep after the one that evicted it
    registry.stop_sweeper()
    await sweeper
    await registry.stop(1)


async def test_the_release_hook_waits_until_no_live_actor_is_busy() -> None:
    from actors.supervisor import Supervisor
    from conf import BackoffSettings

    released = asyncio.Event()
    gate = asyncio.Event()
    busy_when_released: list[bool] = []

    class Held(Actor[str]):
        async def handle(self, message: str) -> str:
            if message == "hold":
                await gate.wait()
            return message

    def release() -> None:
        busy_when_released.append(registry.busy())
        released.set()

    supervisor = Supervisor("c", backoff=BackoffSettings(initial_seconds=0.001), max_restarts=3, window_seconds=10)
    registry: ConversationRegistry[Held] = ConversationRegistry(
        lambda cid: Held(cid, 8), supervisor, idle_seconds=0.04, after_evictions=release
    )
    held = asyncio.ensure_future(registry.ask("busy", "hold"))
    sweeper = asyncio.create_task(registry.run_evictions())

    async def evicted(count: int) -> None:
        while registry.evicted < count:
            await asyncio.sleep(0.005)

    # Two quiet chats are evicted one after the other while "busy" is still in its turn: the sweeps
    # after the first eviction (one of which released before) pass without a release.
    for number, chat in enumerate(("quick", "later"), start=1):
        assert await registry.ask(chat, "hi") == "hi"
        await asyncio.wait_for(evicted(number), 5)
    assert not released.is_set()
    assert registry.busy()
    gate.set()
    assert await held == "hold"
    await asyncio.wait_for(released.wait(), 5)
    assert busy_when_released == [False]
    registry.stop_sweeper()
    await sweeper
    await registry.stop(1)
