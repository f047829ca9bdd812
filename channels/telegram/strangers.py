"""Who among the users who are not allowed gets a refusal now: at most one each per ten minutes."""

from __future__ import annotations

import time
from collections import OrderedDict

from ops.backoff import Clock

__all__ = ["StrangerGate"]


class StrangerGate:
    """Decides, in memory and in O(1), whether a message from a stranger earns a refusal.

    A stranger is refused at most once per `interval_s`; beyond that their messages cost nothing
    (no write, no task, no request). All strangers together get at most `burst` refusals at once and
    `per_minute` after that (a token bucket), so that a crowd of strangers cannot take the sending
    capacity allowed users need. At most `max_tracked` strangers are remembered (the least recently
    refused are forgotten first), so a flood of ids cannot grow memory without bound.
    Nothing survives a restart: a stranger may then be refused once more.
    """

    def __init__(
        self,
        *,
        interval_s: float = 600.0,
        per_minute: float = 30.0,
        burst: int = 10,
        max_tracked: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self._interval = interval_s
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max_tracked = max_tracked
        self._clock = clock
        self._refused: OrderedDict[int, float] = OrderedDict()
        self._tokens = float(burst)
        self._filled_at = clock()
        self.refusals = 0
        self.silenced = 0

    def admit(self, user_id: int | None) -> bool:
        """True if a refusal should be sent to `user_id` now (and count it as sent)."""
        now = self._clock()
        key = user_id if user_id is not None else 0
        last = self._refused.get(key)
        if last is not None and now - last < self._interval:
            self.silenced += 1
            return False
        self._tokens = min(self._burst, self._tokens + (now - self._filled_at) * self._rate)
        self._filled_at = now
        if self._tokens < 1.0:
            self.silenced += 1
            return False
        self._tokens -= 1.0
        self._refused[key] = now
        self._refused.move_to_end(key)
        while len(self._refused) > self._max_tracked:
            self._refused.popitem(last=False)
        self.refusals += 1
        return True
