"""Wall-clock time for code that acts at given instants (the reminder scheduler), injectable so that
tests run days of reminders in milliseconds.

`SystemClock` is the real one: `now()` is the system's UTC time, and `sleep_until` sleeps on the
event loop's timer. A test passes a clock of its own that moves only when the test says so.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from ops.aio import wait_event

__all__ = ["SystemClock", "WallClock"]


class WallClock(Protocol):
    """The time, and waiting for a time."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    async def sleep_until(self, moment: datetime, wake: asyncio.Event) -> bool:
        """Wait until `moment` or until `wake` is set, whichever comes first; True if `wake` came.
        Cancellation propagates."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


class SystemClock:
    """The system's clock and the event loop's timer.

    A sleep is measured on the loop's monotonic clock from the wall-clock distance at its start: if
    the wall clock is set while sleeping, the sleeper wakes by the old reckoning, which is why
    callers cap how long they sleep before looking at the time again.
    """

    def now(self) -> datetime:
        """The system's time, in UTC."""
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime, wake: asyncio.Event) -> bool:
        """Sleep until `moment` (at once if it is past) or until `wake` is set."""
        seconds = (moment - self.now()).total_seconds()
        if seconds <= 0:
            return wake.is_set()
        return await wait_event(wake, seconds)

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`."""
        await asyncio.sleep(seconds)
