"""FileConversationStore beyond the contract: file names, damage handling, O(1) appends."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

import aiofiles
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from conf.settings import StoreSettings
from stores import (
    ConflictError,
    FileConversationStore,
    FileIngressLog,
    InMemoryConversationStore,
    InMemoryIngressLog,
    StoreError,
    build_stores,
)
from stores.file import conversation_file_name
from tests.test_store_contract import HOSTILE_IDS, records


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "conversations"


async def read(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)


async def write(path: Path, data: bytes) -> None:
    await asyncio.to_thread(path.write_bytes, data)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_file_names_are_safe_unique_and_case_fold_proof() -> None:
    names = [conversation_file_name(conversation_id) for conversation_id in HOSTILE_IDS]
    assert len({name.lower() for name in names}) == len(HOSTILE_IDS)
    for name in names:
        assert re.fullmatch(r"[a-z0-9_][a-z0-9_-]*\.[0-9a-f]{32}\.jsonl", name), name
        assert len(name) <= 100


def test_file_names_are_stable_across_releases() -> None:
    # Renaming the scheme would orphan every stored history: this pins it.
    assert conversation_file_name("123456789") == "123456789.15e2b0d3c33891ebb0f1ef609ec41942.jsonl"
    assert conversation_file_name("-1001234567890:42").startswith("n1001234567890_42.")


async def test_hostile_ids_never_write_outside_the_directory(tmp_path: Path, directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        for conversation_id in HOSTILE_IDS:
            await store.append(conversation_id, records(0, 1))
            assert store.path_for(conversation_id).parent == directory
    assert listing(tmp_path) == ["conversations"]
    assert len(listing(directory)) == len(HOSTILE_IDS)


async def test_a_torn_last_line_is_cut_off_with_a_warning(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 3))
        path = store.path_for("c")
    sound = await read(path)
    await write(path, sound + b'{"seq":3,"text":"half')
    with capture_logs() as logs:
        async with FileConversationStore(directory) as store:
            assert await store.load("c") == records(0, 3)
    assert await read(path) == sound
    assert [entry["event"] for entry in logs] == ["store_torn_tail_skipped"]
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["offset"] == len(sound)


async def test_a_corrupt_last_line_with_its_newline_is_skipped_not_quarantined(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 2))
        path = store.path_for("c")
    # Power loss can leave zeros where the data of an unsynced append should be.
    await write(path, await read(path) + b"\x00" * 40 + b"\n")
    async with FileConversationStore(directory) as store:
        assert await store.load("c") == records(0, 2)
        await store.append("c", records(2, 3))
        assert await store.load("c") == records(0, 3)
    assert not [name for name in listing(directory) if ".corrupt-" in name]


async def test_a_file_damaged_in_the_middle_is_quarantined_and_the_conversation_restarts(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 4))
        path = store.path_for("c")
    lines = (await read(path)).split(b"\n")
    lines[1] = b'{"seq":1,"te'
    damaged = b"\n".join(lines)
    await write(path, damaged)
    with capture_logs() as logs:
        async with FileConversationStore(directory) as store:
            assert await store.load("c") == []
            await store.append("c", records(0, 1))
            assert await store.load("c") == records(0, 1)
    quarantined = [name for name in listing(directory) if ".corrupt-" in name]
    assert len(quarantined) == 1
    assert quarantined[0].startswith(path.name + ".corrupt-")
    assert await read(directory / quarantined[0]) == damaged
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [entry["event"] for entry in errors] == ["store_file_quarantined"]
    assert errors[0]["conversation_id"] == "c"
    assert errors[0]["bad_line"] == 2


async def test_records_out_of_seq_order_in_the_middle_count_as_damage(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 3))
        path = store.path_for("c")
    first, second, third, end = (await read(path)).split(b"\n")
    await write(path, b"\n".join([second, first, third, end]))
    async with FileConversationStore(directory) as store:
        assert await store.load("c") == []


async def test_append_writes_only_the_new_lines(directory: Path) -> None:
    # If append read or rewrote the history it would trip over (or repair) this garbage.
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 3))
        path = store.path_for("c")
        whole = await read(path)
        last_line_start = whole.rstrip(b"\n").rfind(b"\n") + 1
        garbage = b"#" * (last_line_start - 1) + b"\n" + whole[last_line_start:]
        await write(path, garbage)
        await store.append("c", records(3, 4))
    assert await read(path) == garbage + b'{"seq":3,"role":"assistant","text":"message 3"}\n'
    # A store that has not loaded the conversation reads only its last line to learn the last seq.
    async with FileConversationStore(directory) as store:
        with pytest.raises(ConflictError):
            await store.append("c", records(3, 4))
        await store.append("c", records(4, 5))
    assert (await read(path)).startswith(garbage)


async def test_a_fresh_store_repairs_a_torn_tail_before_its_first_append(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 2))
        path = store.path_for("c")
    await write(path, await read(path) + b'{"seq":2,"tex')
    async with FileConversationStore(directory) as store:
        await store.append("c", records(2, 3))
    async with FileConversationStore(directory) as store:
        assert await store.load("c") == records(0, 3)


async def test_a_huge_last_record_is_found_by_the_tail_scan(directory: Path) -> None:
    big = {"seq": 1, "text": "y" * 300_000}
    async with FileConversationStore(directory) as store:
        await store.append("c", [*records(0, 1), big])
    async with FileConversationStore(directory) as store:
        with pytest.raises(ConflictError) as raised:
            await store.append("c", [{"seq": 1}])
        assert raised.value.seq == 1
        await store.append("c", records(2, 3))
        assert await store.load("c") == [*records(0, 1), big, *records(2, 3)]


async def test_concurrent_appends_to_one_conversation_are_serialised(directory: Path) -> None:
    async with FileConversationStore(directory) as store, asyncio.TaskGroup() as group:
        for seq in range(50):
            group.create_task(store.append("c", records(seq, seq + 1)), name=f"append-{seq}")
    async with FileConversationStore(directory) as store:
        assert await store.load("c") == records(0, 50)


async def test_disk_failures_are_store_errors(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await asyncio.to_thread(store.path_for("c").mkdir)
        with pytest.raises(StoreError) as raised:
            await store.append("c", records(0, 1))
        assert raised.value.conversation_id == "c"
        with pytest.raises(StoreError):
            await store.load("c")


async def test_opening_on_a_path_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    await write(tmp_path / "occupied", b"")
    with pytest.raises(StoreError):
        await FileConversationStore(tmp_path / "occupied" / "conversations").open()


async def test_delete_keeps_quarantined_copies(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 3))
        path = store.path_for("c")
    await write(path, b"garbage\n" + await read(path))
    async with FileConversationStore(directory) as store:
        assert await store.load("c") == []
        await store.delete("c")
    assert len([name for name in listing(directory) if ".corrupt-" in name]) == 1


async def test_the_factory_puts_the_ingress_log_where_no_conversation_can_be(tmp_path: Path) -> None:
    store, ingress = build_stores(StoreSettings(backend="file", dir=str(tmp_path / "data")))
    assert isinstance(store, FileConversationStore)
    assert isinstance(ingress, FileIngressLog)
    async with store, ingress:
        for conversation_id in ["_ingress", "updates", "_ingress/updates.jsonl", "updates.jsonl"]:
            await store.append(conversation_id, records(0, 1))
        await ingress.append([{"update_id": 1}])
    async with store, ingress:
        assert await ingress.pending() == [{"update_id": 1}]
        assert await store.load("_ingress") == records(0, 1)
    assert ingress.path == tmp_path / "data" / "_ingress" / "updates.jsonl"


async def test_the_factory_builds_the_in_memory_pair() -> None:
    store, ingress = build_stores(StoreSettings(backend="memory"))
    assert isinstance(store, InMemoryConversationStore)
    assert isinstance(ingress, InMemoryIngressLog)
    async with store, ingress:
        await store.append("c", records(0, 1))
        assert await store.load("c") == records(0, 1)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(min_value=1, max_value=4)),
        st.tuples(st.just("reopen"), st.just(0)),
        st.tuples(st.just("tear"), st.integers(min_value=1, max_value=60)),
        st.tuples(st.just("delete"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=operations)
async def test_any_mix_of_appends_restarts_crashes_and_deletes_keeps_the_acknowledged_history(
    steps: list[tuple[str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        expected: list[dict[str, object]] = []
        store = FileConversationStore(directory)
        await store.open()
        for action, amount in steps:
            if action == "append":
                batch = [{"seq": len(expected) + n, "text": "ü" * n} for n in range(amount)]
                await store.append("c", batch)
                expected.extend(batch)
            elif action == "reopen":
                await store.close()
                store = FileConversationStore(directory)
                await store.open()
            elif action == "tear":
                # A crash mid-append: part of an unacknowledged line, then a restart.
                torn = (b'{"seq":' + str(len(expected)).encode() + b',"text":"' + b"x" * 60)[:amount]
                async with aiofiles.open(store.path_for("c"), "ab") as file:
                    await file.write(torn)
                store = FileConversationStore(directory)
                await store.open()
            else:
                await store.delete("c")
                expected.clear()
            assert await store.load("c") == expected


# load_recent: the same repairs as load, reading from the end


async def test_load_recent_cuts_a_torn_tail_off_like_load(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 3))
        path = store.path_for("c")
    sound = await read(path)
    await write(path, sound + b'{"seq":3,"te' + b"\n" + b"\x00" * 10)
    with capture_logs() as logs:
        async with FileConversationStore(directory) as store:
            assert await store.load_recent("c", lambda record: record["seq"] <= 1) == records(1, 3)
            await store.append("c", records(3, 4))
    assert (await read(path)).startswith(sound + b'{"seq":3,')
    async with FileConversationStore(directory) as store:
        assert await store.load("c") == records(0, 4)
    assert [entry["event"] for entry in logs] == ["store_torn_tail_skipped"]
    assert logs[0]["offset"] == len(sound)


async def test_load_recent_quarantines_a_file_damaged_within_what_it_reads(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        await store.append("c", records(0, 4))
        path = store.path_for("c")
    lines = (await read(path)).split(b"\n")
    lines[2] = b'{"seq":2,"te'
    await write(path, b"\n".join(lines))
    with capture_logs() as logs:
        async with FileConversationStore(directory) as store:
            assert await store.load_recent("c", lambda record: False) == []
            await store.append("c", records(0, 1))
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == ["store_file_quarantined"]
    assert len([name for name in listing(directory) if ".corrupt-" in name]) == 1


async def test_load_recent_reads_a_file_with_an_empty_tail_or_only_damage(directory: Path) -> None:
    async with FileConversationStore(directory) as store:
        path = store.path_for("c")
        await write(path, b'{"seq":0,"te')
        assert await store.load_recent("c", lambda record: False) == []
        assert await read(path) == b""
        await store.append("c", records(0, 1))
        assert await store.load_recent("c", lambda record: False) == records(0, 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda data: data.replace(b"\n", b"")), max_size=12),
    torn=st.binary(max_size=20).map(lambda data: data.replace(b"\n", b"")),
    block=st.integers(min_value=1, max_value=64),
)
def test_lines_read_backwards_are_the_lines_read_forwards_reversed(lines: list[bytes], torn: bytes, block: int) -> None:
    from io import BytesIO

    from stores._file_recent import _lines_backwards

    data = b"".join(line + b"\n" for line in lines) + torn
    expected: list[tuple[bytes, int, bool]] = []
    offset = 0
    for line in lines:
        offset += len(line) + 1
        expected.append((line, offset, True))
    if torn:
        expected.append((torn, len(data), False))
    assert list(_lines_backwards(BytesIO(data), len(data), block)) == expected[::-1]
