"""The one retry and backoff policy: jittered, capped exponential delays that honour Retry-After.

Every part that waits before trying again (supervisor restarts, Telegram polling and sending, the
chat model, DynamoDB, MCP reconnection) asks one `Backoff`, built from `BackoffSettings` by the
composition root and passed in. It lives in `ops` because every layer may import `ops`, and `conf`
holds data, not behaviour.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState
from tenacity.retry import retry_base
from tenacity.wait import wait_base

from conf.settings import BackoffSettings

__all__ = ["Backoff", "Clock", "RetryAfterOf", "Sleep"]

Clock = Callable[[], float]
"""Seconds on a monotonic scale (`time.monotonic`)."""
Sleep = Callable[[float], Awaitable[None]]
"""Waits that many seconds (`asyncio.sleep`)."""
RetryAfterOf = Callable[[BaseException], float | None]
"""The server's Retry-After carried by an error, in seconds, or None when it names none."""


class Backoff:
    """Exponential backoff with jitter, capped, honouring a server's Retry-After.

    The delay before retry number `attempt` (1-based) is
    `min(max_seconds, initial_seconds * multiplier ** (attempt - 1))` plus a uniform jitter in
    `[0, jitter_seconds]`. The jitter is added after the cap, so that clients retrying at the cap
    still spread apart; the longest wait is `max_seconds + jitter_seconds`, which the settings keep
    within 10 s so that service resumes within 10 s of an outage's end. A Retry-After replaces the
    computed delay as given: retrying earlier would only draw another refusal.

    `clock` and `sleep` are the time the policy's own waits use (`retrying`, and callers that
    `await backoff.sleep(...)`), and `uniform` draws the jitter: tests inject them to run in
    milliseconds and deterministically. A Backoff holds no per-caller state: one instance serves
    every part of the process.
    """

    __slots__ = ("_uniform", "clock", "settings", "sleep")

    def __init__(
        self,
        settings: BackoffSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.settings = settings if settings is not None else BackoffSettings()
        self.clock = clock
        self.sleep = sleep
        self._uniform = uniform

    @classmethod
    def of(cls, value: Backoff | BackoffSettings) -> Backoff:
        """`value` itself, or a Backoff built from settings (for callers that still pass settings)."""
        return value if isinstance(value, Backoff) else cls(value)

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based); `retry_after`, if given, wins."""
        if retry_after is not None:
            return max(0.0, float(retry_after))
        settings = self.settings
        try:
            grown = settings.initial_seconds * settings.multiplier ** max(0, attempt - 1)
        except OverflowError:  # an outage of thousands of attempts: long past the cap
            grown = settings.max_seconds
        capped = float(min(settings.max_seconds, grown))
        if settings.jitter_seconds > 0:
            capped += self._uniform(0.0, settings.jitter_seconds)
        return capped

    def wait(self, retry_after: RetryAfterOf | None = None) -> wait_base:
        """This policy as a tenacity `wait`: the delay after the failed attempt, or the Retry-After
        that `retry_after` finds in its error."""
        return _TenacityWait(self, retry_after)

    def retrying(
        self,
        *,
        retry: retry_base,
        budget_seconds: float | None = None,
        before_sleep: Callable[[RetryCallState], Any] | None = None,
        retry_after: RetryAfterOf | None = None,
    ) -> AsyncRetrying:
        """A tenacity loop (`async for attempt in backoff.retrying(...)`) under this policy.

        It retries what `retry` accepts, waiting through `sleep`. With a `budget_seconds` it gives
        up (re-raising the last error) when the next wait would end that long or longer after this
        call, on `clock`, so a Retry-After beyond the budget ends the retries at once; without one
        it retries until the call succeeds or fails for good. Build one per call: the budget
        starts when it is built.
        """
        started = self.clock()

        def out_of_budget(state: RetryCallState) -> bool:
            if budget_seconds is None:
                return False
            return self.clock() - started + (state.upcoming_sleep or 0.0) >= budget_seconds

        return AsyncRetrying(
            retry=retry,
            wait=self.wait(retry_after),
            stop=out_of_budget,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )


class _TenacityWait(wait_base):
    """Adapts `Backoff.delay` to tenacity's `wait` interface."""

    def __init__(self, backoff: Backoff, retry_after: RetryAfterOf | None) -> None:
        self._backoff = backoff
        self._retry_after = retry_after

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        server_says = self._retry_after(error) if error is not None and self._retry_after is not None else None
        return self._backoff.delay(retry_state.attempt_number, retry_after=server_says)
