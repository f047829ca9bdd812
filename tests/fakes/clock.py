"""A wall clock that moves only when a test moves it (`ops.clock.WallClock`).

    clock = FakeWallClock(datetime(2026, 5, 1, 7, 0, tzinfo=UTC))
    ... start something that sleeps until a time ...
    await clock.until_sleeping()           # it is waiting now
    clock.advance(minutes=5)               # everyone whose time has come wakes up

Days of reminders run in milliseconds: nothing here waits on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta


class FakeWallClock:
    """`now()` is what the test set; sleepers wake when `advance` passes their time."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        """The test's time."""
        return self._now

    def __call__(self) -> datetime:
        """The store's `Clock` shape: the same time."""
        return self._now

    def advance(self, **delta: float) -> datetime:
        """Move time on by `timedelta(**delta)`, waking every sleeper whose time has come."""
        return self.set(self._now + timedelta(**delta))

    def set(self, moment: datetime) -> datetime:
        """Move time to `moment` (never back)."""
        assert moment >= self._now, "time only moves forward"
        self._now = moment
        for entry in list(self._sleepers):
            when, future = entry
            if when <= moment:
                # Gone at once, so that `until_sleeping` right after this counts only new sleeps.
                self._sleepers.remove(entry)
                if not future.done():
                    future.set_result(None)
        return moment

    async def sleep_until(self, moment: datetime, wake: asyncio.Event) -> bool:
        """Wait for `moment` (as `advance` moves time) or for `wake`."""
        if moment <= self._now:
            return wake.is_set()
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (moment, timer)
        self._sleepers.append(entry)
        self._changed.set()
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([timer, woken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)
            woken.cancel()
            timer.cancel()
            await asyncio.wait([woken])
        return wake.is_set()

    async def sleep(self, seconds: float) -> None:
        """Wait until time has moved on by `seconds`."""
        await self.sleep_until(self._now + timedelta(seconds=seconds), asyncio.Event())

    @property
    def sleepers(self) -> list[datetime]:
        """When each sleeper wants to wake, soonest first."""
        return sorted(when for when, _ in self._sleepers)

    def is_sleeping(self, until: datetime | None = None) -> bool:
        """True if a task sleeps on this clock (until `until`, if given)."""
        return any(until is None or when == until for when, _ in self._sleepers)

    async def until_sleeping(self, until: datetime | None = None, *, timeout: float = 5.0) -> None:
        """Wait until a task sleeps on this clock (until `until`, if given): the work before its
        sleep is done."""
        await self.wait_for(lambda: self.is_sleeping(until), timeout=timeout)

    async def wait_for(self, condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
        """Wait until `condition()` holds, looking again each time a task starts to sleep here."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if condition():
                    return
                await self._changed.wait()
