"""The contract every ConversationStore and IngressLog backend keeps: memory, file, DynamoDB (moto).

DynamoDB runs against moto's server over HTTP. Its sizes are smaller where each record is one
HTTP round trip (about 2.5-4 ms on moto, so 10,000 would take 25-40 s): 600 records in Query pages
of 64 (10 pages: the same pagination a 10,000-record history takes), and 20 conversations for
the concurrency case. test_dynamodb_store.py loads a real 10,000-record history.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conf.settings import BackoffSettings, DynamoDBSettings
from ops.backoff import Backoff
from stores import (
    ConflictError,
    ConversationStore,
    FileConversationStore,
    FileIngressLog,
    IngressLog,
    InMemoryConversationStore,
    InMemoryIngressLog,
    Record,
    StoreError,
)
from stores._dynamodb_table import partition_key
from stores.dynamodb import DynamoDBConversationStore, DynamoDBIngressLog, DynamoDBTable
from stores.file_ingress import INGRESS_FILE
from tests.fakes.moto_server import fake_aws_credentials, moto_server

HOSTILE_IDS = [
    "../../etc/passwd",
    "",
    "x" * 10_240,
    "a\x00b",
    "\x00",
    "Chat",
    "chat",
    "CHAT",
    "/",
    ".",
    "..",
    "con",
    "-1001234567890:42",
    "-1001234567890",
    "console",
    "日本語のチャット 🚀",
    "e\u0301",
    "\u00e9",
    "\ud800lone surrogate",
    "line\nbreak",
]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@dataclass
class Backend:
    """A store backend under test: a fresh storage per test, reopened as often as a test likes."""

    name: str
    history_size: int
    conversations: int
    appends_each: int
    durable: bool
    store_factory: Callable[[], ConversationStore]
    ingress_factory: Callable[[], IngressLog]

    def store(self) -> ConversationStore:
        """A new store object on this test's storage (not yet opened)."""
        return self.store_factory()

    def ingress(self) -> IngressLog:
        """A new ingress log object on this test's storage (not yet opened)."""
        return self.ingress_factory()


@pytest.fixture(params=["memory", "file", "dynamodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "memory":
        memory_store, memory_log = InMemoryConversationStore(), InMemoryIngressLog()
        return Backend("memory", 10_000, 100, 10, False, lambda: memory_store, lambda: memory_log)
    if request.param == "file":
        directory = tmp_path / "conversations"
        return Backend(
            "file",
            10_000,
            100,
            10,
            True,
            lambda: FileConversationStore(directory),
            lambda: FileIngressLog(directory / INGRESS_FILE),
        )
    fake_aws_credentials(monkeypatch)
    endpoint = request.getfixturevalue("moto_endpoint")
    settings = DynamoDBSettings(
        table=f"contract-{uuid.uuid4().hex[:12]}", region="us-east-1", endpoint_url=endpoint, create_table=True
    )
    backoff = Backoff(BackoffSettings(initial_seconds=0.01, max_seconds=0.1, jitter_seconds=0))

    def table() -> DynamoDBTable:
        return DynamoDBTable(settings, backoff, retry_budget_seconds=5, page_size=64)

    return Backend(
        "dynamodb",
        600,
        20,
        5,
        True,
        lambda: DynamoDBConversationStore(settings, table=table()),
        lambda: DynamoDBIngressLog(settings, table=table()),
    )


def records(start: int, stop: int, **extra: Any) -> list[Record]:
    return [
        {"seq": seq, "role": "user" if seq % 2 == 0 else "assistant", "text": f"message {seq}", **extra}
        for seq in range(start, stop)
    ]


def random_text(size: int, seed: int = 7) -> str:
    """Text that does not compress much (so DynamoDB must split it, not just compress it)."""
    generator = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + ' äöü€日本🚀\t"\\'
    return "".join(generator.choices(alphabet, k=size))


# ConversationStore


async def test_an_unknown_conversation_loads_empty(backend: Backend) -> None:
    async with backend.store() as store:
        assert await store.load("123456789") == []


async def test_appended_records_load_back_equal_and_in_order(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("123456789", records(0, 1))
        await store.append("123456789", records(1, 4, tool_calls=[{"id": "t1", "args": {"x": [1, 2.5, None, True]}}]))
        await store.append("123456789", records(4, 5))
        assert await store.load("123456789") == records(0, 1) + records(
            1, 4, tool_calls=[{"id": "t1", "args": {"x": [1, 2.5, None, True]}}]
        ) + records(4, 5)


async def test_history_survives_reopening_the_store(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("-1001234567890:42", records(0, 3))
    async with backend.store() as store:
        assert await store.load("-1001234567890:42") == records(0, 3)
        await store.append("-1001234567890:42", records(3, 4))
    async with backend.store() as store:
        assert await store.load("-1001234567890:42") == records(0, 4)


async def test_an_empty_batch_is_a_no_op(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("console", [])
        assert await store.load("console") == []


async def test_unicode_text_round_trips_exactly(backend: Backend) -> None:
    texts = [
        "Привет, мир",
        "日本語のテキスト",
        "emoji 🚀👩‍👩‍👧 and flags 🇺🇦",
        "rtl עברית العربية",
        "combining e\u0301 vs \u00e9",
        "separators \u2028 \u2029 and \x85",
        "control \x00 \x07 \x1b[31m \r\n\t",
        "lone surrogate \ud83d end",
        "quotes \" ' \\ /",
    ]
    batch: list[Record] = [{"seq": seq, "text": text, "ключ": text} for seq, text in enumerate(texts)]
    async with backend.store() as store:
        await store.append("unicode", batch)
    async with backend.store() as store:
        assert await store.load("unicode") == batch


async def test_a_one_megabyte_record_round_trips(backend: Backend) -> None:
    big = {"seq": 1, "role": "tool", "text": random_text(1024 * 1024)}
    async with backend.store() as store:
        await store.append("big", records(0, 1))
        await store.append("big", [big])
        await store.append("big", records(2, 3))
    async with backend.store() as store:
        loaded = await store.load("big")
    assert loaded == [*records(0, 1), big, *records(2, 3)]
    assert len(loaded[1]["text"]) == 1024 * 1024


async def test_a_long_history_loads_whole_and_in_order(backend: Backend) -> None:
    size = backend.history_size
    history = records(0, size)
    async with backend.store() as store:
        for start in range(0, size, 500):
            await store.append("long", history[start : start + 500])
    async with backend.store() as store:
        started = time.perf_counter()
        loaded = await store.load("long")
        elapsed = time.perf_counter() - started
    assert loaded == history
    assert elapsed < 5, f"loading {size} records took {elapsed:.2f} s"


async def test_appending_a_taken_seq_raises_conflict_and_keeps_history(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("123", records(0, 3))
        with pytest.raises(ConflictError) as raised:
            await store.append("123", [{"seq": 2, "text": "second writer"}])
        assert raised.value.seq == 2
        assert raised.value.conversation_id == "123"
        assert isinstance(raised.value, StoreError)
    # A store that has not read the conversation yet (a second process) detects it too.
    async with backend.store() as store:
        with pytest.raises(ConflictError):
            await store.append("123", [{"seq": 0, "text": "overwrite"}])
        assert await store.load("123") == records(0, 3)
        await store.append("123", records(3, 4))
        assert await store.load("123") == records(0, 4)


@pytest.mark.parametrize(
    "bad",
    [
        [{"text": "no seq"}],
        [{"seq": "1"}],
        [{"seq": True}],
        [{"seq": -1}],
        [{"seq": 1}, {"seq": 1}],
        [{"seq": 2}, {"seq": 1}],
        [{"seq": 1, "value": float("nan")}],
        [{"seq": 1, "value": object()}],
        ["not a mapping"],
    ],
)
async def test_malformed_records_are_refused_and_nothing_is_written(backend: Backend, bad: list[Any]) -> None:
    async with backend.store() as store:
        await store.append("c", records(0, 1))
        with pytest.raises(StoreError):
            await store.append("c", bad)
        assert await store.load("c") == records(0, 1)


async def test_delete_forgets_only_that_conversation(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("a", records(0, 3))
        await store.append("b", records(0, 2))
        await store.append("big", [{"seq": 0, "text": random_text(600_000)}])
        await store.delete("a")
        await store.delete("big")
        await store.delete("never-seen")
        assert await store.load("a") == []
        assert await store.load("big") == []
        assert await store.load("b") == records(0, 2)
        await store.append("a", records(0, 1))
    async with backend.store() as store:
        assert await store.load("a") == records(0, 1)
        assert await store.load("big") == []


async def test_concurrent_appends_to_many_conversations_all_land(backend: Backend) -> None:
    ids = [f"-100{n}" for n in range(backend.conversations)]

    async def converse(conversation_id: str) -> None:
        for seq in range(backend.appends_each):
            await store.append(conversation_id, [{"seq": seq, "text": f"{conversation_id}/{seq}"}])

    async with backend.store() as store, asyncio.TaskGroup() as group:
        for conversation_id in ids:
            group.create_task(converse(conversation_id), name=f"converse-{conversation_id}")
    async with backend.store() as store:
        for conversation_id in ids:
            expected = [{"seq": seq, "text": f"{conversation_id}/{seq}"} for seq in range(backend.appends_each)]
            assert await store.load(conversation_id) == expected


async def test_hostile_ids_get_separate_histories(backend: Backend) -> None:
    async with backend.store() as store:
        for index, conversation_id in enumerate(HOSTILE_IDS):
            await store.append(conversation_id, [{"seq": 0, "owner": index}, {"seq": 1, "owner": index}])
    async with backend.store() as store:
        for index, conversation_id in enumerate(HOSTILE_IDS):
            assert await store.load(conversation_id) == [{"seq": 0, "owner": index}, {"seq": 1, "owner": index}]
        await store.delete("Chat")
        assert await store.load("Chat") == []
        assert await store.load("chat") == [
            {"seq": 0, "owner": HOSTILE_IDS.index("chat")},
            {"seq": 1, "owner": HOSTILE_IDS.index("chat")},
        ]


async def test_a_crash_during_an_append_leaves_the_earlier_records_intact(backend: Backend, tmp_path: Path) -> None:
    base = records(0, 3)
    last: Record = {"seq": 3, "text": "the last line: ünïcödé 🚀 is cut mid-character too"}
    async for store in crashed_appends(backend, "crashy", base, last):
        async with store:
            assert await store.load("crashy") == base
            await store.append("crashy", [last])
            assert await store.load("crashy") == [*base, last]
        async with backend.store() as reopened:
            assert await reopened.load("crashy") == [*base, last]


async def crashed_appends(
    backend: Backend, conversation_id: str, base: list[Record], last: Record
) -> AsyncIterator[ConversationStore]:
    """Every state an append of `last` after `base` can leave behind when the process dies in it,
    each followed by a fresh store (as after a restart)."""
    if backend.name == "file":
        async with backend.store() as store:
            await store.append(conversation_id, [*base, last])
            assert isinstance(store, FileConversationStore)
            path = store.path_for(conversation_id)
        whole = await asyncio.to_thread(path.read_bytes)
        start = whole.rstrip(b"\n").rfind(b"\n") + 1
        for offset in range(start, len(whole)):  # every byte offset of the last line, its newline included
            await asyncio.to_thread(path.write_bytes, whole[:offset])
            yield backend.store()
    elif backend.name == "dynamodb":
        # The append of a split record died after writing some chunks but before its head.
        async with backend.store() as store:
            await store.append(conversation_id, base)
            assert isinstance(store, DynamoDBConversationStore)
            await store._put_chunk(conversation_id, partition_key(conversation_id), 3, 1, b"partial chunk")
        yield backend.store()
    else:
        # Nothing of an in-memory append survives its process; the state is simply the base.
        store = backend.store()
        await store.append(conversation_id, base)
        yield store


# ConversationStore.load_recent: what an activation reads


class StopAtMarker:
    """Stops at a `reset`, or, after a `summary` covering up to `last_seq`, at the record after it;
    counts the records it is shown."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.floor: int | None = None

    def __call__(self, record: Record) -> bool:
        self.seen.append(record["seq"])
        if record.get("type") == "reset":
            return True
        if record.get("type") == "summary" and self.floor is None:
            self.floor = record["last_seq"] + 1
        return self.floor is not None and record["seq"] <= self.floor


async def test_load_recent_of_an_unknown_conversation_is_empty(backend: Backend) -> None:
    async with backend.store() as store:
        assert await store.load_recent("nobody", lambda record: True) == []


async def test_load_recent_without_a_stop_reads_the_whole_history(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("whole", records(0, 70))
    async with backend.store() as store:
        assert await store.load_recent("whole", lambda record: False) == records(0, 70)


async def test_load_recent_reads_back_to_the_marker_and_no_further(backend: Backend) -> None:
    history = [*records(0, 10), {"seq": 10, "type": "reset"}, *records(11, 80)]
    async with backend.store() as store:
        await store.append("reset", history)
    async with backend.store() as store:
        stop = StopAtMarker()
        assert await store.load_recent("reset", stop) == history[10:]
    # Each record is shown once, newest first, and nothing older than the marker is parsed for it.
    assert stop.seen == list(range(79, 9, -1))


async def test_load_recent_follows_a_summary_back_to_the_first_record_it_does_not_cover(backend: Backend) -> None:
    summary: Record = {"seq": 60, "type": "summary", "text": "s", "first_seq": 0, "last_seq": 49}
    history = [*records(0, 60), summary, *records(61, 70)]
    async with backend.store() as store:
        await store.append("summary", history)
        stop = StopAtMarker()
        assert await store.load_recent("summary", stop) == history[50:]
    assert stop.seen == list(range(69, 49, -1))


async def test_load_recent_of_a_long_history_reads_only_its_end(backend: Backend) -> None:
    # DynamoDB: three Query pages of 64 (each record is a round trip to write); the others: 10,000.
    size = 130 if backend.name == "dynamodb" else backend.history_size
    async with backend.store() as store:
        for start in range(0, size, 500):
            await store.append("long-recent", records(start, min(start + 500, size)))
    async with backend.store() as store:
        stop = StopAtMarker()
        started = time.perf_counter()
        recent = await store.load_recent("long-recent", lambda record: stop(record) or record["seq"] <= size - 10)
        elapsed = time.perf_counter() - started
    assert recent == records(size - 10, size)
    assert stop.seen == list(range(size - 1, size - 11, -1))
    assert elapsed < 1, f"reading the last 10 of {size} records took {elapsed:.2f} s"


async def test_load_recent_returns_big_records_whole(backend: Backend) -> None:
    big = {"seq": 2, "role": "tool", "text": random_text(1024 * 1024)}
    history = [*records(0, 2), big, *records(3, 5)]
    async with backend.store() as store:
        await store.append("big-recent", history)
    async with backend.store() as store:
        assert await store.load_recent("big-recent", lambda record: record["seq"] <= 1) == history[1:]
        assert await store.load_recent("big-recent", lambda record: record["seq"] <= 2) == history[2:]


async def test_appends_after_load_recent_continue_the_history(backend: Backend) -> None:
    async with backend.store() as store:
        await store.append("continue", records(0, 20))
    async with backend.store() as store:
        assert await store.load_recent("continue", lambda record: True) == records(19, 20)
        with pytest.raises(ConflictError):
            await store.append("continue", [{"seq": 19, "text": "again"}])
        await store.append("continue", records(20, 21))
        assert await store.load("continue") == records(0, 21)


async def test_load_recent_after_a_crashed_append_returns_what_was_acknowledged(
    backend: Backend, tmp_path: Path
) -> None:
    base = records(0, 3)
    last: Record = {"seq": 3, "text": "the last line: ünïcödé 🚀 is cut mid-character too"}
    async for store in crashed_appends(backend, "crashy-recent", base, last):
        async with store:
            assert await store.load_recent("crashy-recent", lambda record: False) == base
            await store.append("crashy-recent", [last])
            assert await store.load_recent("crashy-recent", lambda record: record["seq"] <= 2) == [base[2], last]
        async with backend.store() as reopened:
            assert await reopened.load("crashy-recent") == [*base, last]


# IngressLog


def update(update_id: int, text: str = "hi") -> dict[str, Any]:
    return {"update_id": update_id, "message": {"message_id": update_id, "chat": {"id": -100123}, "text": text}}


async def test_a_new_ingress_log_has_nothing_pending(backend: Backend) -> None:
    async with backend.ingress() as ingress:
        assert await ingress.pending() == []


async def test_pending_updates_come_back_in_update_id_order_until_done(backend: Backend) -> None:
    async with backend.ingress() as ingress:
        await ingress.append([update(12), update(10)])
        await ingress.append([update(11, "Привет 🚀")])
        assert await ingress.pending() == [update(10), update(11, "Привет 🚀"), update(12)]
        await ingress.done(11)
        await ingress.done(99)  # unknown: not an error
        assert await ingress.pending() == [update(10), update(12)]


async def test_an_update_appended_twice_is_held_once(backend: Backend) -> None:
    async with backend.ingress() as ingress:
        await ingress.append([update(5), update(5)])
        await ingress.append([update(5), update(6)])
        assert await ingress.pending() == [update(5), update(6)]
        await ingress.done(5)
        assert await ingress.pending() == [update(6)]


async def test_pending_updates_survive_a_restart(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the in-memory log is not durable by design")
    async with backend.ingress() as ingress:
        await ingress.append([update(1), update(2), update(3)])
        await ingress.done(2)
    async with backend.ingress() as ingress:
        assert await ingress.pending() == [update(1), update(3)]
        await ingress.done(1)
        await ingress.done(3)
    async with backend.ingress() as ingress:
        assert await ingress.pending() == []


async def test_updates_without_an_int_update_id_are_refused(backend: Backend) -> None:
    async with backend.ingress() as ingress:
        with pytest.raises(StoreError):
            await ingress.append([{"message": {}}])
        with pytest.raises(StoreError):
            await ingress.append([{"update_id": "7"}])
        assert await ingress.pending() == []


async def test_many_updates_in_one_batch_are_all_held(backend: Backend) -> None:
    batch = [update(n) for n in range(1000, 1100)]
    async with backend.ingress() as ingress:
        await ingress.append(batch)
        assert await ingress.pending() == batch
