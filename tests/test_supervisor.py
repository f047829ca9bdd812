"""The Supervisor: restart policies, restart intensity, backoff, escalation and ordered stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors.runtime import Actor, ActorStopped
from actors.supervisor import Supervisor
from app.system import EXIT_FATAL, EXIT_OK, AssistantSystem
from conf import BackoffSettings, Settings

FAST = BackoffSettings(initial_seconds=0.001, max_seconds=0.01, jitter_seconds=0)


class Boom(Exception):
    """The failure a test injects into a child."""


class Escalations:
    """Collects on_escalate calls and lets a test wait for the first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException | None]] = []
        self.called = asyncio.Event()

    def __call__(self, child: str, error: BaseException | None) -> None:
        self.calls.append((child, error))
        self.called.set()


def make_supervisor(max_restarts: int = 3, window: float = 60.0, escalations: Escalations | None = None) -> Supervisor:
    return Supervisor("test", backoff=FAST, max_restarts=max_restarts, window_seconds=window, on_escalate=escalations)


class Runs:
    """A child body that counts its runs, fails the first `failures` of them, and then either returns
    or waits until released, as the test says."""

    def __init__(self, failures: int = 0, *, then_wait: bool = True) -> None:
        self.failures = failures
        self.then_wait = then_wait
        self.count = 0
        self.release = asyncio.Event()
        self.reached: dict[int, asyncio.Event] = {}

    def reached_run(self, number: int) -> asyncio.Event:
        return self.reached.setdefault(number, asyncio.Event())

    async def __call__(self) -> None:
        self.count += 1
        self.reached_run(self.count).set()
        if self.count <= self.failures:
            raise Boom(f"run {self.count}")
        if self.then_wait:
            await self.release.wait()


class Exits:
    """An on_exit callback that records the exception and lets a test wait for it."""

    def __init__(self) -> None:
        self.errors: list[BaseException | None] = []
        self.done = asyncio.Event()

    def __call__(self, error: BaseException | None) -> None:
        self.errors.append(error)
        self.done.set()


def no_other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


# -- restart policies ------------------------------------------------------------------------------


async def test_a_crashed_permanent_child_is_restarted() -> None:
    supervisor = make_supervisor()
    body = Runs(failures=2)
    with capture_logs() as logs:
        supervisor.start_child("worker", body)
        await body.reached_run(3).wait()
    assert [line["event"] for line in logs] == ["child_crashed", "child_crashed"]
    assert len(supervisor) == 1
    await supervisor.stop(1.0)
    assert no_other_tasks() == set()


async def test_a_permanent_child_that_returns_is_restarted_too() -> None:
    supervisor = make_supervisor()
    body = Runs(then_wait=False)
    supervisor.start_child("worker", body, restart="permanent")
    await body.reached_run(2).wait()
    await supervisor.stop(1.0)


async def test_a_transient_child_is_restarted_after_a_crash_but_not_after_a_normal_exit() -> None:
    supervisor = make_supervisor()
    body = Runs(failures=1, then_wait=False)
    exits = Exits()
    child = supervisor.start_child("worker", body, restart="transient", on_exit=exits)
    await exits.done.wait()
    assert body.count == 2
    assert exits.errors == [None]
    assert child.finished.done()
    assert len(supervisor) == 0


async def test_a_temporary_child_is_never_restarted_and_its_exit_hears_the_error() -> None:
    supervisor = make_supervisor()
    body = Runs(failures=1)
    exits = Exits()
    with capture_logs() as logs:
        supervisor.start_child("once", body, restart="temporary", on_exit=exits)
        await exits.done.wait()
    assert body.count == 1
    assert len(exits.errors) == 1
    assert isinstance(exits.errors[0], Boom)
    assert [line["event"] for line in logs] == ["child_failed"]


async def test_child_names_are_unique_and_a_stopping_supervisor_takes_no_children() -> None:
    supervisor = make_supervisor()
    body = Runs()
    supervisor.start_child("worker", body)
    with pytest.raises(ValueError, match="already exists"):
        supervisor.start_child("worker", Runs())
    await supervisor.stop(1.0)
    with pytest.raises(RuntimeError, match="stopping"):
        supervisor.start_child("late", Runs())


# -- intensity and escalation ----------------------------------------------------------------------


async def test_a_permanent_child_past_its_restart_intensity_escalates() -> None:
    escalations = Escalations()
    supervisor = make_supervisor(max_restarts=2, escalations=escalations)
    body = Runs(failures=100)
    with capture_logs() as logs:
        child = supervisor.start_child("gateway", body)
        await escalations.called.wait()
    assert body.count == 3, "two restarts were allowed, the third crash is one too many"
    assert len(escalations.calls) == 1
    name, error = escalations.calls[0]
    assert name == "gateway"
    assert isinstance(error, Boom)
    assert child.finished.done()
    assert len(supervisor) == 0
    assert "child_restart_intensity_exceeded" in [line["event"] for line in logs]


async def test_a_transient_child_past_its_intensity_is_given_up_without_escalating() -> None:
    escalations = Escalations()
    supervisor = make_supervisor(max_restarts=1, escalations=escalations)
    body = Runs(failures=100)
    exits = Exits()
    supervisor.start_child("conversation", body, restart="transient", on_exit=exits)
    await exits.done.wait()
    assert body.count == 2
    assert isinstance(exits.errors[0], Boom)
    assert escalations.calls == []


async def test_crashes_older_than_the_window_do_not_count_towards_the_intensity() -> None:
    escalations = Escalations()
    # A window this short forgets each crash before the next restart (backoff >= 1 ms).
    supervisor = make_supervisor(max_restarts=1, window=0.0001, escalations=escalations)
    body = Runs(failures=5)
    supervisor.start_child("worker", body)
    await body.reached_run(6).wait()
    assert escalations.calls == []
    await supervisor.stop(1.0)


async def test_escalation_makes_the_system_stop_with_exit_status_1() -> None:
    system = AssistantSystem(Settings(), {})
    assert system.exit_code == EXIT_OK
    supervisor = Supervisor("root", backoff=FAST, max_restarts=0, window_seconds=60, on_escalate=system._escalate)
    supervisor.start_child("gateway", Runs(failures=1))
    await system._shutdown.wait()
    assert system.exit_code == EXIT_FATAL == 1


async def test_the_first_non_zero_exit_code_wins() -> None:
    system = AssistantSystem(Settings(), {})
    system.request_stop()
    assert system.exit_code == EXIT_OK
    system.request_stop(EXIT_FATAL)
    system.request_stop(2)
    assert system.exit_code == EXIT_FATAL


# -- stop ------------------------------------------------------------------------------------------


class StoppableActor(Actor[str]):
    """An actor that records, in a shared list, when it stops."""

    def __init__(self, name: str, order: list[str]) -> None:
        super().__init__(name, 8)
        self.order = order

    async def handle(self, message: str) -> str:
        return message

    async def on_stop(self) -> None:
        # Let any other child run meanwhile: reverse order must come from the supervisor, not luck.
        await asyncio.sleep(0)
        self.order.append(self.name)


async def test_stop_stops_children_one_by_one_in_reverse_start_order() -> None:
    supervisor = make_supervisor()
    order: list[str] = []
    for name in ("store", "tools", "registry", "gateway"):
        actor = StoppableActor(name, order)
        supervisor.start_child(name, actor.run, stop=actor.stop)
    await supervisor.stop(1.0)
    assert order == ["gateway", "registry", "tools", "store"]
    assert len(supervisor) == 0
    assert no_other_tasks() == set()


async def test_stop_lets_running_work_finish_within_the_grace_period() -> None:
    supervisor = make_supervisor()
    finished = asyncio.Event()

    class Slow(Actor[asyncio.Event]):
        async def handle(self, message: asyncio.Event) -> None:
            message.set()
            await asyncio.sleep(0.02)  # a short piece of real work, well within the grace
            finished.set()

    actor = Slow("slow", 8)
    supervisor.start_child("slow", actor.run, stop=actor.stop)
    started = asyncio.Event()
    actor.tell(started)
    queued = actor.ask_future(asyncio.Event())
    await started.wait()
    await supervisor.stop(5.0)
    assert finished.is_set()
    assert queued.done()
    assert queued.exception() is None, "what was queued before the stop is handled"


async def test_a_child_still_running_after_the_grace_period_is_cancelled() -> None:
    supervisor = make_supervisor()
    forever = Runs()  # waits for a release that never comes, ignoring no stop request
    exits = Exits()
    with capture_logs() as logs:
        supervisor.start_child("stuck", forever, stop=lambda: None, on_exit=exits)
        await forever.reached_run(1).wait()
        await supervisor.stop(0.01)
    assert "child_stop_timed_out" in [line["event"] for line in logs]
    assert exits.errors == [None]
    assert no_other_tasks() == set()


async def test_a_child_without_a_stop_callback_is_cancelled_at_once() -> None:
    supervisor = make_supervisor()
    body = Runs()
    supervisor.start_child("plain", body)
    await body.reached_run(1).wait()
    await supervisor.stop(10.0)  # returns well before the grace: cancellation is immediate
    assert no_other_tasks() == set()


async def test_stop_all_at_once_stops_children_concurrently() -> None:
    supervisor = make_supervisor()
    both_stopping = asyncio.Event()
    stopping: list[str] = []

    class Waits(Actor[str]):
        async def handle(self, message: str) -> str:
            return message

        async def on_stop(self) -> None:
            stopping.append(self.name)
            if len(stopping) == 2:
                both_stopping.set()
            await both_stopping.wait()  # deadlocks unless the other child stops at the same time

    for name in ("a", "b"):
        actor = Waits(name, 4)
        supervisor.start_child(name, actor.run, stop=actor.stop)
    await supervisor.stop_all_at_once(5.0)
    assert sorted(stopping) == ["a", "b"]
    assert no_other_tasks() == set()


async def test_an_actor_waiting_for_its_restart_drains_its_mailbox_on_stop() -> None:
    # A long backoff keeps the crashed actor waiting for its restart when the stop comes.
    supervisor = Supervisor(
        "slow-restarts",
        backoff=BackoffSettings(initial_seconds=10, max_seconds=10, jitter_seconds=0),
        max_restarts=5,
        window_seconds=60,
    )
    crashed = asyncio.Event()

    class CrashesOnce(Actor[str]):
        def __init__(self) -> None:
            super().__init__("flaky", 8)
            self.crashes = 0

        async def handle(self, message: str) -> str:
            if message == "flaky" and self.crashes == 0:
                self.crashes += 1
                crashed.set()
                raise Boom("first attempt")
            return message.upper()

    actor = CrashesOnce()
    exits = Exits()
    child = supervisor.start_child("flaky", actor.run, restart="transient", stop=actor.stop, on_exit=exits)
    flaky = actor.ask_future("flaky")
    queued = actor.ask_future("queued")
    assert child.task is not None
    # The supervisor's done callback was added before asyncio.wait's, so the restart is scheduled.
    await asyncio.wait([child.task])
    assert crashed.is_set()
    async with asyncio.timeout(5):
        await supervisor.stop(1.0)
        assert await flaky == "FLAKY"
        assert await queued == "QUEUED"
    assert exits.errors == [None]
    assert no_other_tasks() == set()


async def test_a_plain_child_waiting_for_its_restart_is_simply_dropped_on_stop() -> None:
    supervisor = Supervisor(
        "slow-restarts",
        backoff=BackoffSettings(initial_seconds=10, max_seconds=10, jitter_seconds=0),
        max_restarts=5,
        window_seconds=60,
    )
    body = Runs(failures=1)
    exits = Exits()
    child = supervisor.start_child("plain", body, on_exit=exits)
    assert child.task is not None
    await asyncio.wait([child.task])  # the supervisor's done callback (the restart timer) ran first
    await supervisor.stop(1.0)
    assert body.count == 1
    assert exits.errors == [None]
    assert no_other_tasks() == set()


async def test_asks_queued_when_an_actor_is_given_up_hear_that_it_stopped() -> None:
    supervisor = make_supervisor(max_restarts=0)

    class AlwaysFails(Actor[str]):
        async def on_start(self) -> None:
            raise Boom("store down")

    actor = AlwaysFails("doomed", 4)
    reply = actor.ask_future("hello")
    exits = Exits()
    supervisor.start_child("doomed", actor.run, restart="transient", stop=actor.stop, on_exit=exits)
    await exits.done.wait()
    actor.reject_waiting()  # what the registry's on_exit does
    with pytest.raises(ActorStopped):
        await reply
