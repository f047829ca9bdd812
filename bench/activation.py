"""Activation benchmark (issue 11, item 2): what it costs to start a conversation's actor over a long
history on disk, for histories of 1 MB, 100 MB and 1 GB.

An activation reads only what the model may still see (`ConversationStore.load_recent`, back to the
last reset or summary, or to two context budgets), so its time and memory should not depend on the
history's size. Each case runs in a fresh process (so peak RSS is its own): the history is written
as JSONL directly (fast), then a `ConversationActor` over a `FileConversationStore` runs `on_start`
eleven times (the median is reported). Two shapes of history, neither with a reset or summary
marker (as histories written before summaries existed: the worst case):

  - tools: turns with a 50 KB tool result each (as in the issue's measurement: 3,000 turns, 157 MB)
  - chat: short turns (a user message and an answer of a few hundred bytes)

For contrast, the old activation (`load` of everything, then decoding) is measured up to 100 MB.

    .venv/bin/python bench/activation.py [--quick] [--dir PATH]

Exits 1 if an activation over 1 GB takes more than 1.5x the CPU time or memory of one over 1 MB
(give or take 2 ms and 2 MB of noise).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root there.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import format_table, rss_mb  # noqa: E402

SIZES = {"1 MB": 1 << 20, "100 MB": 100 << 20, "1 GB": 1 << 30}
QUICK_SIZES = {"1 MB": 1 << 20, "100 MB": 100 << 20}
CONVERSATION = "bench-history"
TOLERANCE = 1.5
SLACK_MS = 2.0  # below this, a difference is scheduling noise on a shared machine, not cost
SLACK_MB = 2.0


def turn_lines(seq: int, update_id: int, shape: str) -> list[dict[str, object]]:
    """One turn's records, as the conversation actor writes them."""
    user = {"role": "user", "content": f"question {update_id}: " + "what about this? " * 5, "user_id": 7}
    if shape == "chat":
        answer = {"role": "assistant", "content": "an answer of a few sentences. " * 10, "model": "m"}
        records = [user, answer]
    else:
        call = {"id": f"c{update_id}", "name": "search__fetch", "arguments": {"url": "https://example.com"}}
        asking = {"role": "assistant", "content": "", "tool_calls": [call], "model": "m"}
        result = {"role": "tool", "tool_call_id": f"c{update_id}", "name": "search__fetch", "content": "x" * 50_000}
        answer = {"role": "assistant", "content": "here is what I found. " * 20, "model": "m"}
        records = [user, asking, result, answer]
    records.append({"type": "delivered"})
    for offset, record in enumerate(records):
        record["seq"] = seq + offset
        record["update_id"] = update_id
        record["chat_id"] = 42
    return records


def write_history(path: Path, size: int, shape: str) -> int:
    """A history of at least `size` bytes, written directly; returns its record count.

    Each turn's lines are serialised once, with markers where `seq` and `update_id` go, and then
    filled in with bytes formatting: a gigabyte is written in seconds.
    """
    templates = []
    for offset, record in enumerate(turn_lines(_SEQ_MARK, _UPDATE_MARK, shape)):
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        line = line.replace(b"%", b"%%").replace(str(_SEQ_MARK + offset).encode(), b"%(seq)d")
        templates.append(line.replace(str(_UPDATE_MARK).encode(), b"%(update)d"))
    per_chunk = max(1, (256 << 10) // sum(len(line) for line in templates))
    seq = update_id = written = 0
    with path.open("wb") as file:
        while written < size:
            chunk = []
            for _ in range(per_chunk):
                update_id += 1
                for line in templates:
                    chunk.append(line % {b"seq": seq, b"update": update_id})
                    seq += 1
            data = b"".join(chunk)
            file.write(data)
            written += len(data)
    return seq


_SEQ_MARK = 987_654_000
_UPDATE_MARK = 123_456_789


def child(directory: Path, mode: str, runs: int) -> None:
    """Measure activations in this process and print the figures as JSON."""
    import asyncio

    from actors.conversation import ConversationActor, TurnSettings
    from llm import EmptyToolbox, decode_history
    from stores import FileConversationStore

    class NoChannel:  # the activation sends nothing
        pass

    async def activate(conversation_id: str = CONVERSATION) -> tuple[float, float, int]:
        store = FileConversationStore(directory)
        started, cpu = time.perf_counter(), time.process_time()
        if mode == "old":
            records = len(decode_history(await store.load(conversation_id)))
        else:
            actor = ConversationActor(
                conversation_id,
                store=store,
                model=None,  # type: ignore[arg-type]
                toolbox=EmptyToolbox(),
                channel=NoChannel(),  # type: ignore[arg-type]
                settings=TurnSettings("Be brief.", context_tokens=16000),
            )
            await actor.on_start()
            records = len(actor._history)
        return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000, records

    async def main() -> dict[str, float]:
        await activate("warm-up")  # lazy imports and worker threads: not the history's cost
        before = rss_mb_self()
        samples = [await activate() for _ in range(runs)]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "median_ms": statistics.median(ms for ms, _, _ in samples),
            "cpu_ms": statistics.median(cpu for _, cpu, _ in samples),
            "records": samples[0][2],
            "rss_before_mb": before,
            "peak_rss_mb": peak,
        }

    print(json.dumps(asyncio.run(main())))


def rss_mb_self() -> float:
    import os

    return rss_mb(os.getpid())


def measure(directory: Path, mode: str, runs: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(directory), "--mode", mode, "--runs", str(runs)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 MB and 100 MB only")
    parser.add_argument("--dir", type=Path, help="where to write the histories (default: a temporary directory)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="new", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=11, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is not None:
        child(arguments.child, arguments.mode, arguments.runs)
        return 0
    from stores.file import conversation_file_name

    sizes = QUICK_SIZES if arguments.quick else SIZES
    rows: list[list[str]] = []
    figures: dict[tuple[str, str], dict[str, float]] = {}
    for shape in ("tools", "chat"):
        for label, size in sizes.items():
            with tempfile.TemporaryDirectory(dir=arguments.dir) as directory:
                path = Path(directory) / conversation_file_name(CONVERSATION)
                started = time.perf_counter()
                records = write_history(path, size, shape)
                built_s = time.perf_counter() - started
                new = figures[(shape, label)] = measure(Path(directory), "new", arguments.runs)
                old = measure(Path(directory), "old", 1) if size <= 100 << 20 else None
            rows.append(
                [
                    shape,
                    label,
                    f"{records:,}",
                    f"{built_s:.1f}",
                    f"{new['records']:,.0f}",
                    f"{new['median_ms']:.1f}",
                    f"{new['cpu_ms']:.1f}",
                    f"{new['peak_rss_mb'] - new['rss_before_mb']:.1f}",
                    f"{new['peak_rss_mb']:.0f}",
                    f"{old['median_ms']:.0f}" if old else "-",
                    f"{old['peak_rss_mb'] - old['rss_before_mb']:.0f}" if old else "-",
                ]
            )
    headers = [
        "history",
        "on disk",
        "records",
        "written s",
        "loaded",
        "activation ms",
        "CPU ms",
        "RSS added MB",
        "peak RSS MB",
        "old load ms",
        "old RSS added MB",
    ]
    print(format_table(headers, rows))
    return verdict(figures, sizes)


def verdict(figures: dict[tuple[str, str], dict[str, float]], sizes: dict[str, int]) -> int:
    smallest, largest = next(iter(sizes)), list(sizes)[-1]
    failed = False
    for shape in ("tools", "chat"):
        small, large = figures[(shape, smallest)], figures[(shape, largest)]
        added_small = small["peak_rss_mb"] - small["rss_before_mb"]
        added_large = large["peak_rss_mb"] - large["rss_before_mb"]
        # CPU time (all threads of the process): the work done, which the wall clock of a shared
        # machine hides under other processes' load; the wall clock is in the table beside it.
        time_ok = large["cpu_ms"] <= small["cpu_ms"] * TOLERANCE + SLACK_MS
        memory_ok = added_large <= added_small * TOLERANCE + SLACK_MB
        failed |= not (time_ok and memory_ok)
        print(
            f"{shape}: {largest} / {smallest}: CPU time x{large['cpu_ms'] / small['cpu_ms']:.2f}, "
            f"RSS added {added_large:.1f} vs {added_small:.1f} MB: {'flat' if time_ok and memory_ok else 'NOT FLAT'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
