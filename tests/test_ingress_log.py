"""FileIngressLog beyond the contract: torn tails, damage, compaction that keeps it small."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from stores import FileIngressLog, StoreError


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "conversations" / "_ingress" / "updates.jsonl"


def update(update_id: int) -> dict[str, Any]:
    return {"update_id": update_id, "message": {"chat": {"id": 42}, "text": f"message {update_id} ✓"}}


async def read(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)


async def write(path: Path, data: bytes) -> None:
    await asyncio.to_thread(path.write_bytes, data)


async def test_a_crash_at_any_byte_of_the_last_append_keeps_the_earlier_updates(path: Path) -> None:
    async with FileIngressLog(path) as ingress:
        await ingress.append([update(1), update(2)])
        await ingress.done(1)
        await ingress.append([update(3)])
    whole = await read(path)
    start = whole.rstrip(b"\n").rfind(b"\n") + 1
    for offset in range(start, len(whole)):
        await write(path, whole[:offset])
        async with FileIngressLog(path) as ingress:
            assert await ingress.pending() == [update(2)]
            await ingress.append([update(4)])
        async with FileIngressLog(path) as ingress:
            assert await ingress.pending() == [update(2), update(4)]


async def test_a_corrupt_line_in_the_middle_costs_only_that_line(path: Path) -> None:
    async with FileIngressLog(path) as ingress:
        await ingress.append([update(1)])
        await ingress.append([update(2)])
        await ingress.append([update(3)])
    lines = (await read(path)).split(b"\n")
    lines[1] = b"\x00\x00 not json"
    await write(path, b"\n".join(lines))
    with capture_logs() as logs:
        async with FileIngressLog(path) as ingress:
            assert await ingress.pending() == [update(1), update(3)]
    assert [(entry["event"], entry["line"]) for entry in logs] == [("ingress_line_skipped", 2)]


async def test_the_log_is_compacted_when_nothing_is_pending(path: Path) -> None:
    async with FileIngressLog(path, compact_idle_bytes=2_000) as ingress:
        for update_id in range(500):
            await ingress.append([update(update_id)])
            await ingress.done(update_id)
            assert ingress.size < 2_000 + 200
        assert ingress.size < 2_000
    assert (await asyncio.to_thread(os.path.getsize, path)) < 2_000
    assert sorted(os.listdir(path.parent)) == ["updates.jsonl"]
    async with FileIngressLog(path) as ingress:
        assert await ingress.pending() == []


async def test_a_stuck_update_does_not_let_the_log_grow_without_bound(path: Path) -> None:
    async with FileIngressLog(path, compact_idle_bytes=1_000, compact_max_bytes=8_000) as ingress:
        await ingress.append([update(0)])  # never answered
        for update_id in range(1, 1_000):
            await ingress.append([update(update_id)])
            await ingress.done(update_id)
            assert ingress.size < 8_000 + 200
        await ingress.append([update(5_000)])
    async with FileIngressLog(path) as ingress:
        assert await ingress.pending() == [update(0), update(5_000)]


async def test_a_compaction_interrupted_before_its_rename_leaves_the_log_intact(path: Path) -> None:
    async with FileIngressLog(path) as ingress:
        await ingress.append([update(1), update(2)])
    await write(path.with_name(path.name + ".compacting"), b'{"u":{"update_id":9}}\n{"u":')
    async with FileIngressLog(path) as ingress:
        assert await ingress.pending() == [update(1), update(2)]
    assert sorted(os.listdir(path.parent)) == ["updates.jsonl"]


async def test_append_writes_one_line_per_new_update_and_done_one_mark(path: Path) -> None:
    async with FileIngressLog(path) as ingress:
        await ingress.append([update(1), update(2), update(1)])
        await ingress.append([update(2)])
        await ingress.done(2)
        await ingress.done(2)
    lines = (await read(path)).splitlines()
    assert len(lines) == 3
    assert lines[-1] == b'{"d":2}'


async def test_appending_to_a_closed_log_is_a_store_error(path: Path) -> None:
    ingress = FileIngressLog(path)
    with pytest.raises(StoreError):
        await ingress.append([update(1)])
    await ingress.open()
    await ingress.close()
    await ingress.close()
    with pytest.raises(StoreError):
        await ingress.append([update(1)])
