"""The actor runtime: the bounded mailbox and the Actor's tell/ask/stop, crashes and poison messages.

Incarnations are driven by hand here (calling `run` again after it raises, as a Supervisor
would), so each test shows the Actor's own contract; tests/test_supervisor.py and
tests/test_registry.py cover the same behaviour with the real supervisor.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors._mailbox import Mailbox
from actors.runtime import Actor, ActorStopped, MailboxFull, PoisonMessage


class Boom(Exception):
    """The failure a test injects into a handler."""


class Recorder(Actor[Any]):
    """Records what it handles; a message ("crash", n) fails its first n attempts, ("slow", event)
    waits for the event. State is reloaded (counted) by `on_start`, like a conversation's history."""

    def __init__(self, name: str = "recorder", mailbox_size: int = 16) -> None:
        super().__init__(name, mailbox_size)
        self.handled: list[Any] = []
        self.attempts: dict[int, int] = {}
        self.tasks: set[asyncio.Task[Any] | None] = set()
        self.starts = 0
        self.stops = 0
        self.dead: list[tuple[Any, BaseException]] = []
        self.entered = asyncio.Event()

    async def on_start(self) -> None:
        self.starts += 1

    async def on_stop(self) -> None:
        self.stops += 1

    async def on_dead_letter(self, message: Any, error: BaseException) -> None:
        self.dead.append((message, error))

    async def handle(self, message: Any) -> Any:
        self.tasks.add(asyncio.current_task())
        if isinstance(message, tuple) and message[0] == "crash":
            key = id(message)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if self.attempts[key] <= message[1]:
                raise Boom(f"attempt {self.attempts[key]}")
        if isinstance(message, tuple) and message[0] == "slow":
            self.entered.set()
            await message[1].wait()
        self.handled.append(message)
        return ("done", message)


async def run_incarnations(actor: Actor[Any], limit: int = 10) -> list[BaseException]:
    """Run `actor.run` until it returns, restarting it after each crash (as a supervisor would);
    returns the crashes."""
    crashes: list[BaseException] = []
    for _ in range(limit):
        try:
            async with asyncio.timeout(5):  # an incarnation that never ends is a failure, not a hang
                await actor.run()
        except Boom as exc:
            crashes.append(exc)
        else:
            return crashes
    raise AssertionError(f"actor still crashing after {limit} incarnations")


# -- mailbox ---------------------------------------------------------------------------------------


async def test_mailbox_get_waits_for_a_put_and_returns_items_in_order() -> None:
    mailbox = Mailbox("m", capacity=4)
    getter = asyncio.create_task(mailbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    mailbox.put("a")
    mailbox.put("b")
    assert await getter == "a"
    assert await mailbox.get() == "b"
    assert len(mailbox) == 0


async def test_mailbox_at_capacity_refuses_at_once_unless_forced() -> None:
    mailbox = Mailbox("m", capacity=2)
    mailbox.put(1)
    mailbox.put(2)
    with pytest.raises(MailboxFull) as caught:
        mailbox.put(3)
    assert (caught.value.actor, caught.value.capacity) == ("m", 2)
    mailbox.put("control", force=True)
    assert mailbox.drain() == [1, 2, "control"]


async def test_a_closed_mailbox_refuses_puts_but_keeps_what_it_holds() -> None:
    mailbox = Mailbox("m", capacity=2)
    mailbox.put(1)
    mailbox.close()
    assert mailbox.closed
    with pytest.raises(ActorStopped):
        mailbox.put(2)
    mailbox.push_front(0)
    assert await mailbox.get() == 0
    assert mailbox.drain() == [1]


async def test_a_cancelled_get_leaves_the_mailbox_usable() -> None:
    mailbox = Mailbox("m", capacity=2)
    getter = asyncio.create_task(mailbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    mailbox.put("x")
    assert await mailbox.get() == "x"


# -- tell, ask, stop -------------------------------------------------------------------------------


async def test_told_messages_are_handled_in_order_by_the_actors_own_task() -> None:
    actor = Recorder()
    task = asyncio.create_task(actor.run(), name="recorder")
    for index in range(10):
        actor.tell(index)
    actor.stop()
    await task
    assert actor.handled == list(range(10))
    assert actor.tasks == {task}, "only the actor's own task runs handle"
    assert (actor.starts, actor.stops) == (1, 1)


async def test_ask_returns_what_handle_returns() -> None:
    actor = Recorder()
    task = asyncio.create_task(actor.run())
    assert await actor.ask("hello") == ("done", "hello")
    assert await actor.ask_future("again") == ("done", "again")
    actor.stop()
    await task


async def test_ask_times_out_but_the_message_is_still_handled() -> None:
    actor = Recorder()
    release = asyncio.Event()
    task = asyncio.create_task(actor.run())
    actor.tell(("slow", release))
    with pytest.raises(TimeoutError):
        await actor.ask("late", timeout=0.01)
    release.set()
    actor.stop()
    await task
    assert actor.handled == [("slow", release), "late"]


async def test_a_full_mailbox_answers_busy_at_once_instead_of_blocking() -> None:
    actor = Recorder(mailbox_size=2)
    actor.tell(1)
    actor.tell(2)
    with pytest.raises(MailboxFull):
        actor.tell(3)
    with pytest.raises(MailboxFull):
        actor.ask_future(4)
    with pytest.raises(MailboxFull):
        await actor.ask(5, timeout=10)  # refused before any waiting, whatever the timeout
    assert actor.queued == 2


async def test_messages_told_before_stop_are_handled_and_later_ones_refused() -> None:
    actor = Recorder()
    actor.tell("before")
    actor.stop()
    assert actor.stopping
    with pytest.raises(ActorStopped):
        actor.tell("after")
    with pytest.raises(ActorStopped):
        await actor.ask("after")
    actor.stop()  # a second stop is harmless
    await actor.run()
    assert actor.handled == ["before"]
    assert actor.stops == 1


async def test_idle_is_false_while_handling_or_holding_messages() -> None:
    actor = Recorder()
    assert actor.idle
    release = asyncio.Event()
    task = asyncio.create_task(actor.run())
    actor.tell(("slow", release))
    assert not actor.idle
    await actor.entered.wait()
    assert actor.queued == 0
    assert not actor.idle, "the message being handled makes it busy"
    release.set()
    assert await actor.ask("x") == ("done", "x")
    assert actor.idle
    actor.stop()
    await task


# -- crashes and poison messages -------------------------------------------------------------------


async def test_a_message_that_crashes_once_is_retried_first_by_the_next_incarnation() -> None:
    actor = Recorder()
    flaky = ("crash", 1)
    reply = actor.ask_future(flaky)
    actor.tell("next")
    actor.stop()
    crashes = await run_incarnations(actor)
    assert len(crashes) == 1
    assert actor.starts == 2, "the next incarnation reloads its state"
    assert actor.handled == [flaky, "next"]
    assert await reply == ("done", flaky)
    assert actor.dead == []


async def test_a_message_that_crashes_twice_is_dead_lettered_and_the_actor_goes_on() -> None:
    actor = Recorder()
    poison = ("crash", 99)
    with capture_logs() as logs:
        reply = actor.ask_future(poison)
        actor.tell("next")
        actor.stop()
        crashes = await run_incarnations(actor)
    assert len(crashes) == 2, "both failures crash their incarnation, so state is reloaded"
    assert actor.handled == ["next"]
    with pytest.raises(PoisonMessage) as caught:
        await reply
    assert caught.value.message is poison
    assert isinstance(caught.value.__cause__, Boom)
    assert [message for message, _ in actor.dead] == [poison]
    assert isinstance(actor.dead[0][1], Boom)
    dead_lines = [line for line in logs if line["event"] == "message_dead_lettered"]
    assert len(dead_lines) == 1
    assert dead_lines[0]["actor"] == "recorder"
    assert dead_lines[0]["log_level"] == "error"


async def test_a_failing_dead_letter_report_is_logged_and_the_asker_still_hears() -> None:
    class BadReporter(Recorder):
        async def on_dead_letter(self, message: Any, error: BaseException) -> None:
            raise RuntimeError("report failed")

    actor = BadReporter()
    with capture_logs() as logs:
        reply = actor.ask_future(("crash", 99))
        actor.stop()
        await run_incarnations(actor)
    with pytest.raises(PoisonMessage):
        await reply
    assert any(line["event"] == "dead_letter_report_failed" for line in logs)


async def test_a_cancelled_incarnation_puts_its_message_back_and_waiting_asks_hear_stopped() -> None:
    actor = Recorder()
    release = asyncio.Event()
    task = asyncio.create_task(actor.run())
    slow = actor.ask_future(("slow", release))
    queued = actor.ask_future("queued")
    actor.tell("told")
    await actor.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert actor.queued == 3, "the interrupted message went back to the head"
    with capture_logs() as logs:
        assert actor.reject_waiting() == 3
    for reply in (slow, queued):
        with pytest.raises(ActorStopped):
            await reply
    assert logs == [
        {"event": "actor_stopped_with_messages", "actor": "recorder", "messages": 3, "log_level": "warning"}
    ]
    with pytest.raises(ActorStopped):
        actor.tell("after")


async def test_an_incarnation_that_crashes_in_on_stop_leaves_the_next_one_able_to_stop() -> None:
    class BadStop(Recorder):
        async def on_stop(self) -> None:
            await super().on_stop()
            if self.stops == 1:
                raise Boom("flush failed")

    actor = BadStop()
    actor.tell("x")
    actor.stop()
    crashes = await run_incarnations(actor)  # without the fix the second incarnation waits forever
    assert len(crashes) == 1
    assert actor.handled == ["x"]
    assert (actor.starts, actor.stops) == (2, 2)
