"""Properties of the actor runtime under random schedules (hypothesis).

A schedule interleaves tells and asks to several conversations (some messages crash their actor
on the first attempt, some on every attempt, i.e. poison), evictions and yields, on a fresh
registry. Whatever the schedule:

- per conversation, the messages handled successfully are exactly the accepted ones that are not
  poison (or were not stopped), in send order;
- every accepted message is handled exactly once, or dead-lettered exactly once with
  `on_dead_letter` called, a log line, and the asker getting PoisonMessage;
- none is lost: a message refused at the door raised MailboxFull at once, and after a stop
  anything not handled was answered ActorStopped (asks) or counted in the log (tells);
- no two handlers of one conversation ever run at the same time, across activations;
- no task is left after the registry stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from actors.registry import ConversationRegistry
from actors.runtime import Actor, ActorStopped, MailboxFull, PoisonMessage
from actors.supervisor import Supervisor
from conf import BackoffSettings

FAST = BackoffSettings(initial_seconds=0.001, max_seconds=0.01, jitter_seconds=0)
IDLE = 60.0
CONVERSATIONS = 4
REFUSED = object()

Crash = Literal["none", "once", "always"]
Kind = Literal["tell", "ask", "ask_task"]


class Injected(Exception):
    """The failure a schedule injects into a handler."""


@dataclass(slots=True, eq=False)
class Msg:
    """One message of a schedule; `seq` is unique and ascends in schedule order."""

    seq: int
    conversation: str
    crash: Crash


@dataclass
class World:
    """What the test observes; it outlives activations, as a store would."""

    attempts: dict[int, int] = field(default_factory=dict)
    handled: dict[str, list[int]] = field(default_factory=dict)
    dead: dict[str, list[int]] = field(default_factory=dict)
    dead_errors: dict[int, BaseException] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    overlaps: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def accounted(self) -> int:
        return sum(map(len, self.handled.values())) + sum(map(len, self.dead.values()))


class Chaotic(Actor[Msg]):
    """Handles a Msg by recording it, unless the message says to crash on this attempt."""

    def __init__(self, conversation_id: str, world: World, mailbox_size: int) -> None:
        super().__init__(f"conversation:{conversation_id}", mailbox_size)
        self.conversation_id = conversation_id
        self.world = world

    async def handle(self, message: Msg) -> int:
        world = self.world
        conversation = self.conversation_id
        assert message.conversation == conversation, "a message reached another conversation's actor"
        world.running[conversation] = world.running.get(conversation, 0) + 1
        if world.running[conversation] > 1:
            world.overlaps += 1
        try:
            await asyncio.sleep(0)  # give other conversations (and evictions) a chance to interleave
            attempt = world.attempts[message.seq] = world.attempts.get(message.seq, 0) + 1
            if message.crash == "always" or (message.crash == "once" and attempt == 1):
                raise Injected(f"message {message.seq}, attempt {attempt}")
            world.handled.setdefault(conversation, []).append(message.seq)
            world.progress.set()
            return message.seq
        finally:
            world.running[conversation] -= 1

    async def on_dead_letter(self, message: Msg, error: BaseException) -> None:
        self.world.dead.setdefault(self.conversation_id, []).append(message.seq)
        self.world.dead_errors[message.seq] = error
        self.world.progress.set()


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A random schedule over 1 to CONVERSATIONS conversations; sends dominate, so that mailboxes
    hold several messages when crashes and evictions come."""
    conversations = draw(st.integers(1, CONVERSATIONS))
    send = st.tuples(
        st.just("send"),
        st.integers(0, conversations - 1),
        st.sampled_from(["tell", "ask", "ask_task"]),
        st.sampled_from(["none", "none", "none", "once", "always"]),
    )
    evict = st.just(("evict",))
    pause = st.tuples(st.just("yield"), st.integers(1, 4))
    step = st.one_of(send, send, send, evict, pause)
    return draw(st.lists(step, min_size=1, max_size=40))


@dataclass
class Sent:
    """What the schedule sent and how each send went."""

    accepted: dict[str, list[Msg]] = field(default_factory=dict)
    refused: list[Msg] = field(default_factory=list)
    replies: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    kinds: dict[int, Kind] = field(default_factory=dict)


async def run_schedule(
    schedule: list[tuple[Any, ...]], mailbox_size: int, stop_at_once: bool
) -> tuple[World, Sent, list[MutableMapping[str, Any]]]:
    world = World()
    sent = Sent()
    supervisor = Supervisor("conversations", backoff=FAST, max_restarts=1000, window_seconds=60)
    registry: ConversationRegistry[Chaotic] = ConversationRegistry(
        lambda cid: Chaotic(cid, world, mailbox_size), supervisor, idle_seconds=IDLE
    )

    def accept(message: Msg, kind: Kind) -> None:
        sent.accepted.setdefault(message.conversation, []).append(message)
        sent.kinds[message.seq] = kind

    async def ask_in_a_task(message: Msg) -> Any:
        started_askers[0] += 1
        asking = registry.ask(message.conversation, message)
        # Nothing runs between this and the queueing at the start of `await asking`, so the order
        # recorded is the order the mailbox sees.
        accept(message, "ask_task")
        try:
            return await asking
        except MailboxFull:
            sent.accepted[message.conversation].remove(message)
            sent.refused.append(message)
            return REFUSED

    created_askers = sum(op[0] == "send" and op[2] == "ask_task" for op in schedule)
    started_askers = [0]
    with capture_logs() as logs:
        for seq, op in enumerate(schedule):
            if op[0] == "send":
                _, index, kind, crash = op
                message = Msg(seq, f"c{index}", crash)
                try:
                    if kind == "tell":
                        registry.tell(message.conversation, message)
                        accept(message, kind)
                    elif kind == "ask":
                        sent.replies[seq] = registry.actor_for(message.conversation).ask_future(message)
                        accept(message, kind)
                    else:
                        task = asyncio.create_task(ask_in_a_task(message), name=f"asker-{seq}")
                        sent.replies[seq] = task
                except MailboxFull:
                    sent.refused.append(message)
            elif op[0] == "evict":
                registry.evict_idle(now=time.monotonic() + IDLE + 1)
            else:
                for _ in range(op[1]):
                    await asyncio.sleep(0)

        async with asyncio.timeout(10):
            # Let every asker task queue its message, so that what a stop meets is all in mailboxes.
            while started_askers[0] < created_askers:
                await asyncio.sleep(0)
            if not stop_at_once:
                total = sum(map(len, sent.accepted.values()))
                while world.accounted() < total:
                    world.progress.clear()
                    await world.progress.wait()
                registry.evict_idle(now=time.monotonic() + IDLE + 1)
            await registry.stop(5.0)
            if sent.replies:
                await asyncio.wait(sent.replies.values())
    left = asyncio.all_tasks() - {asyncio.current_task()}
    assert left == set(), f"tasks left after stop: {left}"
    return world, sent, logs


def check(world: World, sent: Sent, logs: list[MutableMapping[str, Any]], stop_at_once: bool) -> None:
    assert world.overlaps == 0, "two handlers of one conversation ran at once"
    stopped_asks = 0
    stopped: dict[str, set[int]] = {}
    for conversation, messages in sent.accepted.items():
        handled = world.handled.get(conversation, [])
        dead = world.dead.get(conversation, [])
        assert len(set(handled)) == len(handled), "a message was handled twice"
        assert len(set(dead)) == len(dead), "a message was dead-lettered twice"
        assert not set(handled) & set(dead), "a message was both handled and dead-lettered"
        for message in messages:
            reply = sent.replies.get(message.seq)
            if message.seq in handled:
                assert message.crash != "always"
                if reply is not None:
                    assert reply.result() == message.seq
            elif message.seq in dead:
                assert message.crash == "always"
                assert isinstance(world.dead_errors[message.seq], Injected)
                if reply is not None:
                    error = reply.exception()
                    assert isinstance(error, PoisonMessage)
                    assert isinstance(error.__cause__, Injected)
            else:
                assert stop_at_once, f"message {message.seq} was lost"
                stopped.setdefault(conversation, set()).add(message.seq)
                if reply is not None:
                    assert isinstance(reply.exception(), ActorStopped)
                    stopped_asks += 1
        expected = [
            message.seq
            for message in messages
            if message.crash != "always" and message.seq not in stopped.get(conversation, set())
        ]
        assert handled == expected, "per-conversation order broken (or a message lost)"
        expected_dead = [message.seq for message in messages if message.crash == "always"]
        assert dead == [seq for seq in expected_dead if seq not in stopped.get(conversation, set())]
    handled_anywhere = {seq for seqs in world.handled.values() for seq in seqs}
    assert not handled_anywhere & {message.seq for message in sent.refused}, "a refused message was handled"
    dead_lines = [line for line in logs if line["event"] == "message_dead_lettered"]
    assert len(dead_lines) == sum(map(len, world.dead.values()))
    # Every message a stop left unhandled is counted in a log line (tells have nobody to tell).
    reported = sum(line["messages"] for line in logs if line["event"] == "actor_stopped_with_messages")
    assert reported == sum(map(len, stopped.values()))
    assert stopped_asks <= reported


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules(), mailbox_size=st.sampled_from([2, 4, 64]))
def test_every_message_is_handled_once_in_order_or_dead_lettered(
    schedule: list[tuple[Any, ...]], mailbox_size: int
) -> None:
    world, sent, logs = asyncio.run(run_schedule(schedule, mailbox_size, stop_at_once=False), debug=True)
    check(world, sent, logs, stop_at_once=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules(), mailbox_size=st.sampled_from([2, 4, 64]))
def test_a_stop_in_the_middle_loses_nothing_and_leaves_no_task(
    schedule: list[tuple[Any, ...]], mailbox_size: int
) -> None:
    world, sent, logs = asyncio.run(run_schedule(schedule, mailbox_size, stop_at_once=True), debug=True)
    check(world, sent, logs, stop_at_once=True)
