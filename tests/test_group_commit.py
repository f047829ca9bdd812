"""Group commit of the file usage store: adds that arrive together are written together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stores import FileUsageStore, StoreError, Usage
from stores._group_commit import GroupCommit
from stores._shared_log import Line, SharedLog

T = TypeVar("T")


class CountingLog(SharedLog[list[Line]]):
    """A real shared log on disk that counts its writes (and can be made to fail)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0
        self.fail = False

    def empty(self) -> list[Line]:
        return []

    def fold(self, state: list[Line], line: Line) -> None:
        state.append(line)

    def snapshot(self, state: list[Line]) -> list[Line]:
        return list(state)

    async def transact(self, step: Callable[[list[Line]], tuple[Sequence[Line], T]]) -> T:
        self.writes += 1
        if self.fail:
            raise StoreError("disk full")
        return await super().transact(step)


async def test_many_adds_at_once_are_all_durable_in_a_few_writes(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "log.jsonl")
    commit: GroupCommit[str] = GroupCommit(lambda key: log)
    await asyncio.gather(*(commit.append("k", {"n": n}) for n in range(200)))
    assert sorted(line["n"] for line in await log.read(list)) == list(range(200))
    # The first add's writer takes its turn after the others joined its batch, or the next one.
    assert log.writes <= 2


async def test_a_failed_write_reaches_every_add_of_its_batch_and_the_next_batch_is_fresh(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "log.jsonl")
    commit: GroupCommit[str] = GroupCommit(lambda key: log)
    log.fail = True
    results = await asyncio.gather(*(commit.append("k", {"n": n}) for n in range(3)), return_exceptions=True)
    assert all(isinstance(result, StoreError) for result in results)
    log.fail = False
    await commit.append("k", {"n": 3})
    assert await log.read(list) == [{"n": 3}]


async def test_a_cancelled_adder_still_has_its_line_written(tmp_path: Path) -> None:
    log = CountingLog(tmp_path / "log.jsonl")
    commit: GroupCommit[str] = GroupCommit(lambda key: log)
    adding = asyncio.create_task(commit.append("k", {"n": 1}))
    await asyncio.sleep(0)  # the add has joined a batch
    adding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await adding
    await commit.flush()
    assert await log.read(list) == [{"n": 1}]


async def test_the_usage_store_counts_every_concurrent_add(tmp_path: Path) -> None:
    store = FileUsageStore(tmp_path / "_usage")
    async with store:
        await asyncio.gather(*(store.add(n % 7, "2026-05-01", Usage(10, 1, cost_micros=3)) for n in range(140)))
    async with FileUsageStore(tmp_path / "_usage") as reopened:
        everyone: dict[int, Any] = await reopened.all_users_month("2026-05")
    assert everyone == {user: Usage(200, 20, cost_micros=60) for user in range(7)}
