"""The shared asyncio building blocks: keyed locks, and waiting for an event or a timeout."""

from __future__ import annotations

import asyncio

import pytest

from ops.aio import KeyedLocks, wait_event


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
