"""The stores of facts, reminders, usage and preferences, built together from the store settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from conf.settings import BackoffSettings, StoreSettings
from ops.backoff import Backoff
from stores._time import Clock, utc_now
from stores.base import StoreError, _Resource
from stores.facts import FactStore, InMemoryFactStore
from stores.memory_reminders import InMemoryReminderStore
from stores.reminders import ReminderStore
from stores.usage import InMemoryPreferenceStore, InMemoryUsageStore, PreferenceStore, UsageStore

__all__ = ["FeatureStores", "build_feature_stores"]


@dataclass(frozen=True, slots=True)
class FeatureStores:
    """The four stores of one backend. `async with` (or `open()`/`close()`) opens and closes them
    all: if one fails to open, those already open are closed before the error propagates."""

    facts: FactStore
    reminders: ReminderStore
    usage: UsageStore
    preferences: PreferenceStore

    def __iter__(self) -> Iterator[_Resource]:
        return iter((self.facts, self.reminders, self.usage, self.preferences))

    async def open(self) -> None:
        """Open every store, in order."""
        async with AsyncExitStack() as opened:
            for store in self:
                await store.open()
                opened.push_async_callback(store.close)
            opened.pop_all()

    async def close(self) -> None:
        """Close every store, in reverse order. Safe to call twice."""
        async with AsyncExitStack() as closing:
            for store in self:
                closing.push_async_callback(store.close)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def build_feature_stores(
    settings: StoreSettings, backoff: Backoff | BackoffSettings | None = None, *, clock: Clock = utc_now
) -> FeatureStores:
    """The facts, reminders, usage and preference stores of `settings.backend`, not yet opened.

    File: directories `_facts`, `_reminders`, `_usage` and `_preferences` under `settings.dir`.
    DynamoDB: the state table (`settings.dynamodb.state_table_name`) through one shared client,
    created at open when `create_table` is set. `clock` gives the time to facts and reminders.
    """
    if settings.backend == "file":
        from stores.file_features import FileFactStore, FilePreferenceStore, FileUsageStore
        from stores.file_reminders import FileReminderStore

        directory = Path(settings.dir)
        return FeatureStores(
            FileFactStore(directory / "_facts", clock=clock),
            FileReminderStore(directory / "_reminders", clock=clock),
            FileUsageStore(directory / "_usage"),
            FilePreferenceStore(directory / "_preferences"),
        )
    if settings.backend == "memory":
        return FeatureStores(
            InMemoryFactStore(clock=clock),
            InMemoryReminderStore(clock=clock),
            InMemoryUsageStore(),
            InMemoryPreferenceStore(),
        )
    if settings.backend == "dynamodb":
        # Imported here: aiobotocore costs start-up time that the file backend should not pay.
        from stores._dynamodb_state import StateTable
        from stores.dynamodb_features import DynamoDBFactStore, DynamoDBPreferenceStore, DynamoDBUsageStore
        from stores.dynamodb_reminders import DynamoDBReminderStore

        table = StateTable(settings.dynamodb, Backoff.of(backoff) if backoff is not None else None)
        return FeatureStores(
            DynamoDBFactStore(settings.dynamodb, table=table, clock=clock),
            DynamoDBReminderStore(settings.dynamodb, table=table, clock=clock),
            DynamoDBUsageStore(settings.dynamodb, table=table),
            DynamoDBPreferenceStore(settings.dynamodb, table=table),
        )
    raise StoreError(f"unknown store backend {settings.backend!r}")
