"""Sliding-window rate limits for outbound Telegram requests (see sender.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ops.backoff import Clock, Sleep

__all__ = ["Rate", "RateWindow"]


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` messages in any `period_s` seconds."""

    count: int
    period_s: float


class RateWindow:
    """A sliding-window limiter; waiters go through in arrival order."""

    def __init__(self, rate: Rate, clock: Clock, sleep: Sleep) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    def _forget_old(self, now: float) -> None:
        while self._times and now - self._times[0] >= self._rate.period_s:
            self._times.popleft()

    async def acquire(self) -> None:
        """Wait until one more message fits in the window, and count it."""
        async with self._lock:
            while True:
                now = self._clock()
                self._forget_old(now)
                if len(self._times) < self._rate.count:
                    self._times.append(now)
                    return
                await self._sleep(self._times[0] + self._rate.period_s - now)

    def try_acquire(self, reserve: int = 0) -> bool:
        """Count one more message if it fits now with `reserve` places still free, without waiting;
        False (nothing counted) if not, or if anyone is waiting (they come first)."""
        if self._lock.locked():
            return False
        now = self._clock()
        self._forget_old(now)
        if len(self._times) + reserve < self._rate.count:
            self._times.append(now)
            return True
        return False

    def idle(self) -> bool:
        """True if nothing in the window still counts (it can be forgotten)."""
        now = self._clock()
        return not self._lock.locked() and all(now - t >= self._rate.period_s for t in self._times)
