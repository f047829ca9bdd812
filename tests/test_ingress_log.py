"""FileIngressLog beyond the contract: torn tails, damage, compaction that keeps it small."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from stores import FileIngressLog, StoreError

ROOT = Path(__file__).resolve().parent.parent


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


_PARTIAL_WRITE_CHILD = r"""
import asyncio, resource, signal, sys
from stores import FileIngressLog, StoreError

async def main(path: str) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    async with FileIngressLog(path) as ingress:
        await ingress.append([{"update_id": 1, "message": {"text": "first"}}])
        size = ingress.size
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        # Room for part of the next line only: the disk "fills" in the middle of the write.
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
        try:
            await ingress.append([{"update_id": 2, "message": {"text": "torn" * 50}}])
        except StoreError:
            print("append-2-failed", flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        await ingress.append([{"update_id": 3, "message": {"text": "after"}}])
        print("append-3-ok", flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_a_write_that_fails_part_way_does_not_cost_the_next_update(path: Path) -> None:
    """A full disk in the middle of an append leaves a torn line; the next append (whose offset
    Telegram will then confirm) must not be glued to it and lost on the next start."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PARTIAL_WRITE_CHILD,
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == ["append-2-failed", "append-3-ok"]
    async with FileIngressLog(path) as ingress:
        assert [u["update_id"] for u in await ingress.pending()] == [1, 3]


async def test_a_read_only_log_repairs_nothing_of_a_live_file(path: Path) -> None:
    """`--check` beside a running assistant reads the log without cutting a line being written
    or removing the live compaction's temporary file."""
    async with FileIngressLog(path) as ingress:
        await ingress.append([update(1)])
    whole = await read(path)
    await write(path, whole + b'{"u":{"update_id":2')  # a write in progress in the live process
    temporary = path.with_name(path.name + ".compacting")
    await write(temporary, b"the live compaction")
    async with FileIngressLog(path, read_only=True) as probe:
        assert await probe.pending() == [update(1)]
        with pytest.raises(StoreError):
            await probe.append([update(3)])
    assert await read(path) == whole + b'{"u":{"update_id":2'
    assert await read(temporary) == b"the live compaction"


async def test_a_compaction_that_fails_leaves_a_working_log(path: Path) -> None:
    """The compaction cannot write its temporary file (here: a directory stands in its way):
    `done` reports it, and the log goes on taking updates, none lost."""
    async with FileIngressLog(path, compact_idle_bytes=1) as ingress:
        await ingress.append([update(1)])
        temporary = path.with_name(path.name + ".compacting")
        temporary.mkdir()
        with pytest.raises(StoreError):
            await ingress.done(1)
        temporary.rmdir()
        await ingress.append([update(2)])
    async with FileIngressLog(path) as ingress:
        assert await ingress.pending() == [update(2)]
