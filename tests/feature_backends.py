"""The three backends of the facts, reminders, usage and preference stores, for their contract tests.

A test module defines a parametrised `backend` fixture that calls `make_backend` (the
`moto_endpoint` fixture is in tests/conftest.py). Each test gets fresh storage: a new directory, a new DynamoDB
table on moto (with Query pages of 7 items, so that pagination is always exercised), or new
in-memory stores. `backend.facts()` (and the others) make a new store object on that storage; for
the memory backend it is always the same object, since nothing else would see its data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from conf.settings import BackoffSettings, DynamoDBSettings
from ops.backoff import Backoff
from stores import (
    FactLimits,
    FactStore,
    FileFactStore,
    FilePreferenceStore,
    FileReminderStore,
    FileUsageStore,
    InMemoryFactStore,
    InMemoryPreferenceStore,
    InMemoryReminderStore,
    InMemoryUsageStore,
    PreferenceStore,
    ReminderStore,
    UsageStore,
)
from tests.fakes.moto_server import fake_aws_credentials

T = TypeVar("T")
BACKENDS = ["memory", "file", "dynamodb"]
FAST = Backoff(BackoffSettings(initial_seconds=0.01, max_seconds=0.1, jitter_seconds=0))
START = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """A clock that stands still until a test moves it."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class FeatureBackend:
    """One backend's storage for one test, and factories of store objects on it."""

    name: str
    clock: FakeClock
    make_facts: Callable[[FactLimits | None], FactStore]
    make_reminders: Callable[[int], ReminderStore]
    make_usage: Callable[[], UsageStore]
    make_preferences: Callable[[], PreferenceStore]
    memory: dict[str, object] = field(default_factory=dict)

    @property
    def durable(self) -> bool:
        return self.name != "memory"

    def facts(self, limits: FactLimits | None = None) -> FactStore:
        return self._one("facts", lambda: self.make_facts(limits))

    def reminders(self, max_active: int = 100) -> ReminderStore:
        return self._one("reminders", lambda: self.make_reminders(max_active))

    def usage(self) -> UsageStore:
        return self._one("usage", self.make_usage)

    def preferences(self) -> PreferenceStore:
        return self._one("preferences", self.make_preferences)

    def _one(self, kind: str, make: Callable[[], T]) -> T:
        if self.name != "memory":
            return make()
        if kind not in self.memory:
            self.memory[kind] = make()
        return self.memory[kind]  # type: ignore[return-value]


def make_backend(
    name: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> FeatureBackend:
    """The backend `name` on fresh storage (DynamoDB needs a `moto_endpoint` fixture in the module)."""
    clock = FakeClock()
    if name == "memory":
        return FeatureBackend(
            name,
            clock,
            lambda limits: InMemoryFactStore(clock=clock, limits=limits),
            lambda most: InMemoryReminderStore(clock=clock, max_active_per_conversation=most),
            InMemoryUsageStore,
            InMemoryPreferenceStore,
        )
    if name == "file":
        directory = tmp_path / "conversations"
        return FeatureBackend(
            name,
            clock,
            lambda limits: FileFactStore(directory / "_facts", clock=clock, limits=limits),
            lambda most: FileReminderStore(directory / "_reminders", clock=clock, max_active_per_conversation=most),
            lambda: FileUsageStore(directory / "_usage"),
            lambda: FilePreferenceStore(directory / "_preferences"),
        )
    from stores._dynamodb_state import StateTable
    from stores.dynamodb_features import DynamoDBFactStore, DynamoDBPreferenceStore, DynamoDBUsageStore
    from stores.dynamodb_reminders import DynamoDBReminderStore

    fake_aws_credentials(monkeypatch)
    settings = dynamodb_settings(request.getfixturevalue("moto_endpoint"))

    def table() -> StateTable:
        return StateTable(settings, Backoff(FAST), retry_budget_seconds=5, page_size=7)

    return FeatureBackend(
        name,
        clock,
        lambda limits: DynamoDBFactStore(settings, table=table(), clock=clock, limits=limits),
        lambda most: DynamoDBReminderStore(settings, table=table(), clock=clock, max_active_per_conversation=most),
        lambda: DynamoDBUsageStore(settings, table=table()),
        lambda: DynamoDBPreferenceStore(settings, table=table()),
    )


def dynamodb_settings(endpoint: str, prefix: str = "features") -> DynamoDBSettings:
    """Settings of fresh tables on moto (moto keeps its tables for the whole process), made at start."""
    return DynamoDBSettings(
        table=f"{prefix}-{uuid.uuid4().hex[:12]}", region="us-east-1", endpoint_url=endpoint, create_table=True
    )
