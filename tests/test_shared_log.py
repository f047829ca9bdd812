"""SharedLog's reads: in place while the file is unchanged, through the lock once anyone wrote."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from stores._shared_log import Line, SharedLog


class Counter(SharedLog[dict[str, int]]):
    def empty(self) -> dict[str, int]:
        return {}

    def fold(self, state: dict[str, int], line: Line) -> None:
        state[line["key"]] = state.get(line["key"], 0) + int(line["add"])

    def snapshot(self, state: dict[str, int]) -> list[Line]:
        return [{"key": key, "add": value} for key, value in state.items()]


def seen_on(log: Counter) -> Any:
    """A view that notes the thread it ran on."""
    threads: list[int] = []

    def view(state: dict[str, int]) -> dict[str, int]:
        threads.append(threading.get_ident())
        return dict(state)

    return view, threads


async def test_a_read_of_an_unchanged_file_runs_in_place_and_sees_every_other_writer(tmp_path: Path) -> None:
    path = tmp_path / "counts.jsonl"
    mine, theirs = Counter(path), Counter(path)
    view, threads = seen_on(mine)
    assert await mine.read(view) == {}  # absent, never seen: empty, in place
    await mine.transact(lambda state: ([{"key": "a", "add": 1}], None))
    assert await mine.read(view) == {"a": 1}  # what it wrote itself: in place
    assert threads == [threading.get_ident()] * 2
    await theirs.transact(lambda state: ([{"key": "a", "add": 2}], None))
    assert await mine.read(view) == {"a": 3}  # another object appended: folded in a worker thread
    assert threads[-1] != threading.get_ident()
    assert await mine.read(view) == {"a": 3}
    assert threads[-1] == threading.get_ident()


async def test_a_file_replaced_by_another_objects_compaction_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "counts.jsonl"
    mine, theirs = Counter(path), Counter(path, compact_after=4)
    await mine.transact(lambda state: ([{"key": "a", "add": 1}], None))
    assert await mine.read(dict) == {"a": 1}
    for _ in range(7):  # enough lines for `theirs` to compact the file into a new one
        await theirs.transact(lambda state: ([{"key": "b", "add": 1}], None))
    assert len(path.read_text().splitlines()) < 8
    assert await mine.read(dict) == {"a": 1, "b": 7}


async def test_a_torn_tail_is_never_read_in_place(tmp_path: Path) -> None:
    path = tmp_path / "counts.jsonl"
    log = Counter(path)
    await log.transact(lambda state: ([{"key": "a", "add": 1}], None))
    assert await log.read(dict) == {"a": 1}
    with path.open("ab") as file:  # a writer that died mid-line
        file.write(b'{"key": "a", "ad')
    assert await log.read(dict) == {"a": 1}
    assert path.read_bytes().endswith(b"}\n")  # the read went through the lock, which cut the torn line off
