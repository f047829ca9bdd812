"""The one backoff policy: its delays, Retry-After, the tenacity adapters, and its settings' 10 s cap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import tenacity

from conf import BackoffSettings, ConfigError, load_settings
from ops.backoff import Backoff


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Flaky(Exception):
    """A transient failure; `retry_after` is what a server asked for, if anything."""

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after


def no_jitter(**values: float) -> Backoff:
    return Backoff(BackoffSettings(**{"jitter_seconds": 0, **values}))


def server_says(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, Flaky) else None


async def call_retrying(backoff: Backoff, call: Callable[[], None], budget_seconds: float | None = None) -> None:
    """Run `call` under `backoff.retrying`, retrying Flaky."""
    async for attempt in backoff.retrying(
        retry=tenacity.retry_if_exception_type(Flaky), budget_seconds=budget_seconds, retry_after=server_says
    ):
        with attempt:
            call()


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    backoff = no_jitter(initial_seconds=0.5, max_seconds=8, multiplier=2)
    assert [backoff.delay(attempt) for attempt in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]


def test_backoff_jitter_stays_within_its_bound() -> None:
    backoff = Backoff(BackoffSettings(initial_seconds=1, max_seconds=8, multiplier=2, jitter_seconds=0.5))
    assert isinstance(backoff.wait(), tenacity.wait.wait_base)
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(4 <= delay <= 4.5 for delay in delays)
    assert len(set(delays)) > 1, "jitter spreads restarts apart"


def test_jitter_is_added_after_the_cap_so_capped_retries_still_spread() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    backoff = Backoff(BackoffSettings(initial_seconds=1, max_seconds=8, jitter_seconds=0.5), uniform=uniform)
    assert backoff.delay(20) == 8.5
    assert draws == [(0.0, 0.5)]


def test_an_outage_of_thousands_of_attempts_stays_at_the_cap() -> None:
    backoff = no_jitter(initial_seconds=0.5, max_seconds=8, multiplier=10)
    assert backoff.delay(100_000) == 8


def test_a_servers_retry_after_replaces_the_computed_delay_without_jitter() -> None:
    backoff = Backoff(BackoffSettings(initial_seconds=1, max_seconds=8, jitter_seconds=0.5))
    assert backoff.delay(5, retry_after=30) == 30
    assert backoff.delay(1, retry_after=0.25) == 0.25
    assert backoff.delay(1, retry_after=-1) == 0


def test_settings_become_a_policy_and_a_policy_stays_itself() -> None:
    settings = BackoffSettings(initial_seconds=0.25, jitter_seconds=0)
    made = Backoff.of(settings)
    assert made.settings is settings
    assert made.delay(1) == 0.25
    assert Backoff.of(made) is made


def test_the_longest_wait_is_capped_at_ten_seconds(tmp_path: Path) -> None:
    assert BackoffSettings(max_seconds=9.5, jitter_seconds=0.5).max_seconds == 9.5
    config = tmp_path / "config.yml"
    config.write_text("backoff:\n  max_seconds: 9\n  jitter_seconds: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert caught.value.setting == "backoff"
    assert "at most 10" in caught.value.problem


async def test_retrying_waits_through_the_injected_sleep_and_honours_retry_after() -> None:
    fake = FakeTime()
    backoff = Backoff(BackoffSettings(initial_seconds=1, jitter_seconds=0), clock=fake.clock, sleep=fake.sleep)
    failures = [Flaky(), Flaky(retry_after=7), Flaky()]
    attempts: list[int] = []

    def call() -> None:
        attempts.append(len(attempts) + 1)
        if failures:
            raise failures.pop(0)

    await call_retrying(backoff, call, budget_seconds=60)
    assert attempts == [1, 2, 3, 4]
    assert fake.sleeps == [1, 7, 4]


async def test_retrying_gives_up_with_the_last_error_when_the_next_wait_passes_the_budget() -> None:
    fake = FakeTime()
    backoff = Backoff(BackoffSettings(initial_seconds=1, jitter_seconds=0), clock=fake.clock, sleep=fake.sleep)
    errors: list[Flaky] = []

    def call() -> None:
        errors.append(Flaky())
        raise errors[-1]

    with pytest.raises(Flaky) as caught:
        await call_retrying(backoff, call, budget_seconds=10)
    # Waits 1 + 2 + 4 = 7 s; the next (8 s) would end past the 10 s budget.
    assert fake.sleeps == [1, 2, 4]
    assert caught.value is errors[-1]
    assert len(errors) == 4


async def test_a_retry_after_beyond_the_budget_ends_the_retries_at_once() -> None:
    fake = FakeTime()
    backoff = Backoff(BackoffSettings(jitter_seconds=0), clock=fake.clock, sleep=fake.sleep)
    attempts: list[Flaky] = []

    def call() -> None:
        attempts.append(Flaky(retry_after=3600))
        raise attempts[-1]

    with pytest.raises(Flaky):
        await call_retrying(backoff, call, budget_seconds=5)
    assert len(attempts) == 1
    assert fake.sleeps == []


async def test_without_a_budget_retrying_goes_on_until_success_and_lets_other_errors_through() -> None:
    fake = FakeTime()
    backoff = Backoff(BackoffSettings(initial_seconds=1, max_seconds=2, jitter_seconds=0), sleep=fake.sleep)
    attempts: list[int] = []

    def call() -> None:
        attempts.append(len(attempts) + 1)
        raise Flaky() if len(attempts) < 50 else KeyError("for good")

    with pytest.raises(KeyError):
        await call_retrying(backoff, call)
    assert len(attempts) == 50
    assert fake.sleeps == [1] + [2] * 48
