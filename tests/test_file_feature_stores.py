"""The file backends of the facts, reminders, usage and preference stores beyond the contract:
damage on disk, compaction, one file per user, and claims raced by separate processes."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from stores import (
    FactSource,
    FileFactStore,
    FilePreferenceStore,
    FileReminderStore,
    FileUsageStore,
    NewReminder,
    Reminder,
    ReminderState,
    ReplyTarget,
    StoreError,
    Usage,
    firing_id,
)
from stores.file_features import _UsageLog
from stores.file_reminders import _Reminders

HERE = FactSource("chat")
START = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def logs_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.jsonl"))


async def test_each_users_facts_are_in_that_users_file_only(tmp_path: Path) -> None:
    async with FileFactStore(tmp_path) as store:
        await store.add(111, "alice's fact", HERE)
        await store.add(222, "bob's fact", HERE)
    assert logs_in(tmp_path) == ["u111.jsonl", "u222.jsonl"]
    assert "bob" not in (tmp_path / "u111.jsonl").read_text()
    assert "alice" not in (tmp_path / "u222.jsonl").read_text()


async def test_a_torn_last_line_is_cut_off_and_the_next_write_starts_clean(tmp_path: Path) -> None:
    async with FileFactStore(tmp_path) as store:
        kept = (await store.add(111, "kept", HERE)).fact
    path = tmp_path / "u111.jsonl"
    with path.open("ab") as file:
        file.write(b'{"op":"add","fact":{"user_id":111,"id":"dead')  # a crash mid-append
    with capture_logs() as logs:
        async with FileFactStore(tmp_path) as store:
            assert await store.list_for_user(111) == [kept]
            added = (await store.add(111, "after the crash", HERE)).fact
    assert [line["event"] for line in logs] == ["store_torn_tail_skipped"]
    assert len(lines(path)) == 2
    async with FileFactStore(tmp_path) as store:
        assert await store.list_for_user(111) == [kept, added]


async def test_an_unreadable_line_is_skipped_with_an_error_and_the_rest_kept(tmp_path: Path) -> None:
    async with FileFactStore(tmp_path) as store:
        first = (await store.add(111, "first", HERE)).fact
    path = tmp_path / "u111.jsonl"
    foreign = json.loads(lines(path)[0])
    foreign["fact"]["user_id"] = 222  # another user's fact has no business in this file
    with path.open("a", encoding="utf-8") as file:
        file.write("not json at all\n" + json.dumps(foreign) + "\n" + '{"op":"explode"}\n')
    async with FileFactStore(tmp_path) as store:
        with capture_logs() as logs:
            listed = await store.list_for_user(111)
        second = (await store.add(111, "second", HERE)).fact
        assert await store.list_for_user(111) == [first, second]
    assert listed == [first]
    assert [line["event"] for line in logs] == ["store_line_unreadable"] * 3
    assert all(line["log_level"] == "error" for line in logs)


async def test_a_long_log_is_compacted_and_other_store_objects_follow(tmp_path: Path) -> None:
    async with FileFactStore(tmp_path) as writer, FileFactStore(tmp_path) as reader:
        facts = [(await writer.add(111, f"fact {index}", HERE)).fact for index in range(3)]
        assert len(await reader.list_for_user(111)) == 3  # the reader has read the first file
        for _ in range(300):
            await writer.touch(111, [facts[0].id])
        assert len(lines(tmp_path / "u111.jsonl")) < 100
        listed = await reader.list_for_user(111)
        assert [fact.id for fact in listed] == [fact.id for fact in facts]
        assert listed[0].use_count == 300
        await reader.delete(111, facts[1].id)
        assert [fact.id for fact in await writer.list_for_user(111)] == [facts[0].id, facts[2].id]


def reminder(index: int) -> NewReminder:
    return NewReminder(f"chat-{index % 3}", ReplyTarget(index % 3), 1, f"reminder {index}", START, "UTC")


async def test_compaction_forgets_finished_reminders_and_keeps_active_ones(tmp_path: Path) -> None:
    async with FileReminderStore(tmp_path) as store:
        done = await store.create(reminder(0))
        assert await store.advance(done.conversation_id, done.id, START, None)
        assert await store.confirm(done.conversation_id, done.id, firing_id(done.id, START))
        unsent = await store.create(reminder(2))  # finished, but its firing is not confirmed yet
        assert await store.advance(unsent.conversation_id, unsent.id, START, None)
        active = await store.create(reminder(1))
        moved = START
        for _ in range(300):  # a reminder firing every minute makes many lines
            assert await store.advance(active.conversation_id, active.id, moved, moved + timedelta(minutes=1))
            moved += timedelta(minutes=1)
        assert len(lines(tmp_path / "reminders.jsonl")) < 300
        assert await store.get(done.conversation_id, done.id) is None
        assert [item.next_due for item in await store.due(moved)] == [moved]
    async with FileReminderStore(tmp_path) as store:
        assert [item.id for item in await store.unconfirmed()] == [unsent.id, active.id]


async def test_usage_lines_are_per_month_and_summed(tmp_path: Path) -> None:
    async with FileUsageStore(tmp_path) as store:
        await store.add(1, "2026-04-30", Usage(input_tokens=1))
        await store.add(1, "2026-05-01", Usage(input_tokens=2))
        await store.add(1, "2026-05-01", Usage(input_tokens=3))
    assert len(lines(tmp_path / "2026-04.jsonl")) == 1
    assert len(lines(tmp_path / "2026-05.jsonl")) == 2
    async with FileUsageStore(tmp_path, cached_months=1) as store:
        assert await store.month(1, "2026-05") == Usage(input_tokens=5)
        assert await store.month(1, "2026-04") == Usage(input_tokens=1)
        assert await store.day(1, "2026-05-01") == Usage(input_tokens=5)


async def test_setting_an_unchanged_preference_writes_nothing(tmp_path: Path) -> None:
    async with FilePreferenceStore(tmp_path) as store:
        await store.set_timezone(1, "Europe/Berlin")
        await store.set_timezone(1, "Europe/Berlin")
        await store.set_model("chat", None)
    assert len(lines(tmp_path / "preferences.jsonl")) == 1


async def test_a_directory_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for store in (FileFactStore(blocker / "facts"), FileReminderStore(blocker), FileUsageStore(blocker / "u")):
        with pytest.raises(StoreError, match="cannot create the directory"):
            await store.open()


CLAIMER = textwrap.dedent(
    """
    import asyncio, json, sys
    from datetime import datetime
    from stores import FileReminderStore

    async def main(directory, start):
        async with FileReminderStore(directory) as store:
            due = await store.due(datetime.fromisoformat(start))
            print(json.dumps({"seen": len(due)}), flush=True)
            sys.stdin.readline()  # wait until both processes have read, then race
            won = [r.id for r in due if await store.advance(r.conversation_id, r.id, r.next_due, None)]
            print(json.dumps({"won": won}), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_two_processes_claiming_the_same_firings_each_win_distinct_ones(tmp_path: Path) -> None:
    async with FileReminderStore(tmp_path) as store:
        made = {(await store.create(reminder(index))).id for index in range(30)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLAIMER,
            str(tmp_path),
            START.isoformat(),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None
        assert json.loads(await process.stdout.readline()) == {"seen": 30}
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    won = []
    for process in processes:
        assert process.stdout is not None
        won.append(set(json.loads(await process.stdout.readline())["won"]))
        assert await process.wait() == 0
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == made
    async with FileReminderStore(tmp_path) as store:
        assert await store.due(START) == []


# The file store's heap of due times against a plain scan of every reminder (hypothesis).

CHANGES = st.lists(
    st.tuples(
        st.sampled_from(["put", "due", "next"]),
        st.integers(0, 5),  # which reminder
        st.sampled_from(list(ReminderState)),
        st.integers(0, 8),  # due time, in minutes after START
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(changes=CHANGES)
def test_the_due_heap_answers_as_a_scan_of_every_reminder_would(
    changes: list[tuple[str, int, ReminderState, int]],
) -> None:
    state = _Reminders()
    for kind, which, reminder_state, minutes in changes:
        at = START + timedelta(minutes=minutes)
        if kind == "put":
            item = Reminder(
                f"r{which}", f"chat-{which % 2}", ReplyTarget(1), 1, "x", at, "UTC", None, False, reminder_state, START
            )
            state.put(item)
        active = sorted(state.all_active(), key=lambda item: (item.next_due, item.conversation_id, item.id))
        if kind == "due":
            assert state.due(at) == [item for item in active if item.next_due <= at]
        elif kind == "next":
            assert state.next_due() == (active[0].next_due if active else None)


def test_a_months_usage_holds_one_string_per_day_however_many_users(tmp_path: Path) -> None:
    # The fold holds a key per user and day for the whole month: each line's day is decoded anew,
    # and thousands of users in a day must not mean thousands of copies of it.
    log = _UsageLog(tmp_path / "2026-05.jsonl")
    state = log.empty()
    for user_id in range(3):
        counters = dict.fromkeys(("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"), 1)
        line = {"user": user_id, "day": "2026-05-01", **counters, "cost_micros": 0}
        log.fold(state, json.loads(json.dumps(line)))
    days = [day for _, day in state]
    assert days == ["2026-05-01"] * 3
    assert all(day is days[0] for day in days)
