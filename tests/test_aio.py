"""The shared asyncio building blocks: keyed locks, waiting for an event or a timeout, batched thread trips."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest

from ops.aio import BatchedCalls, KeyedLocks, wait_event


async def test_a_key_serialises_its_holders_and_is_forgotten_when_free() -> None:
    locks: KeyedLocks[int] = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with locks.hold(1):
            first_in.set()
            await release.wait()
            order.append("first")

    async def second() -> None:
        async with locks.hold(1):
            order.append("second")

    holder = asyncio.create_task(first(), name="first")
    await first_in.wait()
    waiter = asyncio.create_task(second(), name="second")
    await asyncio.sleep(0)
    assert order == []
    assert len(locks) == 1
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first", "second"]
    assert len(locks) == 0


async def test_different_keys_never_wait_on_each_other() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    async with locks.hold("a"), asyncio.timeout(1), locks.hold("b"):
        assert len(locks) == 2
    assert len(locks) == 0


async def test_wait_event_is_true_at_once_for_a_set_event() -> None:
    event = asyncio.Event()
    event.set()
    assert await wait_event(event, 0)


async def test_wait_event_is_true_when_the_event_comes_in_time() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 10)


async def test_wait_event_is_false_after_the_timeout() -> None:
    assert not await wait_event(asyncio.Event(), 0.001)


async def test_an_injected_sleep_is_the_timeout_and_nothing_is_left_running() -> None:
    slept: list[float] = []
    event = asyncio.Event()

    async def instant(seconds: float) -> None:
        slept.append(seconds)

    before = asyncio.all_tasks()
    assert not await wait_event(event, 30, sleep=instant)
    assert slept == [30]
    assert asyncio.all_tasks() == before

    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 30, sleep=never)
    assert asyncio.all_tasks() == before


@pytest.mark.parametrize("sleep", [None, asyncio.sleep])
async def test_cancelling_the_waiter_propagates(sleep: object) -> None:
    started = asyncio.Event()

    async def waiter() -> bool:
        started.set()
        return await wait_event(asyncio.Event(), 30, sleep=sleep)  # type: ignore[arg-type]

    task = asyncio.create_task(waiter(), name="waiter")
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_calls_made_together_share_one_thread_trip_and_keep_their_own_outcomes() -> None:
    calls = BatchedCalls()
    threads: list[int] = []

    def work(value: int) -> int:
        threads.append(threading.get_ident())
        if value == 2:
            raise ValueError("two")
        return value * 10

    results = await asyncio.gather(*(calls.call(functools.partial(work, n)) for n in range(4)), return_exceptions=True)
    assert results[:2] == [0, 10]
    assert isinstance(results[2], ValueError)
    assert results[3] == 30
    assert len(set(threads)) == 1  # one trip to one worker thread, in the order of the calls
    assert threading.get_ident() not in threads
    assert await calls.call(lambda: 7) == 7  # a later call makes a trip of its own


async def test_a_cancelled_caller_stops_waiting_while_its_call_runs_to_its_end() -> None:
    calls = BatchedCalls()
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.set()

    waiter = asyncio.create_task(calls.call(slow))
    await asyncio.to_thread(started.wait, 5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await asyncio.to_thread(finished.wait, 5)
    assert finished.is_set()
    assert await calls.call(lambda: "after") == "after"  # the late outcome of the cancelled call is dropped


def test_a_loop_closed_before_its_calls_started_holds_up_no_other_loop() -> None:
    calls = BatchedCalls()
    first = asyncio.new_event_loop()
    waiting = first.create_task(calls.call(lambda: 1))
    first.call_soon(first.stop)  # stops after the call was queued, before its trip starts
    first.run_forever()
    waiting.cancel()
    first.close()

    async def second() -> int:
        return await asyncio.wait_for(calls.call(lambda: 2), 5)

    assert asyncio.run(second()) == 2
