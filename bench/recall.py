"""Recall benchmark (issue 14): BM25 ranking of one user's facts with FactRanker (SQLite FTS5).

For 200 facts (a user's bound) and 2,000 (ten times that), each of 5-40 words drawn with Zipf's
law, and natural-language queries ("when is my sister's birthday"):

  - warm: a recall with the user's index already built (the usual case), median and p99; every
    recall returns the best 20 at most
  - one fact changed: the index brought up to date (one add) before the query
  - cold: the first recall for the user (the index is built from scratch)
  - file recall: `FileFactStore.list_for_user` + rank, as the `recall` tool does it (200 only,
    the bound; on the disk under --dir)

    .venv/bin/python bench/recall.py [--quick] [--dir PATH]

Exits 1 if warm recall at 2,000 facts takes 5 ms or more (median).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root there.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import format_table, median, percentile  # noqa: E402
from stores import Fact, FactLimits, FactRanker, FactSource, FileFactStore  # noqa: E402

FUNCTION_WORDS = ["the", "a", "to", "my", "is", "in", "of", "and", "with", "on", "at", "for", "her", "his"]
CONTENT_WORDS = [
    *("coffee", "tea", "berlin", "lisbon", "wife", "husband", "sister", "brother", "birthday", "allergic"),
    *("peanuts", "dog", "cat", "name", "doctor", "appointment", "friday", "morning", "prefers", "running"),
]
QUERIES = ["coffee in Berlin", "when is my sister's birthday", "allergic", "dog name", "the w17 w2900 running"]
TARGET_MS = 5.0
LIMIT = 20
"""Facts a recall returns at most (the best ones)."""


def make_facts(count: int, seed: int = 1) -> list[Fact]:
    """Facts of 5-40 words drawn with Zipf's law (frequency ~ 1/rank), as words of real text are:
    function words at the top ranks (in most facts), the queried content words at ranks 20-400,
    then 5,000 other words."""
    generator = random.Random(seed)
    others = [f"w{index}" for index in range(5000)]
    words = FUNCTION_WORDS + others[:6]
    for index, word in enumerate(CONTENT_WORDS):
        words += [word, *others[6 + index * 20 : 26 + index * 20]]
    words += others[6 + len(CONTENT_WORDS) * 20 :]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Fact(
            1,
            f"{index:08x}",
            " ".join(generator.choices(words, weights, k=generator.randint(5, 40))),
            start + timedelta(minutes=index),
            FactSource("bench"),
        )
        for index in range(count)
    ]


Sample = tuple[float, float]
"""Wall-clock and CPU milliseconds of one call (CPU: every thread of this process, so the worker
thread's SQLite work is in it; on a busy machine it shows the work where the wall clock shows the wait)."""


async def timed(call: Callable[[], Awaitable[object]]) -> Sample:
    started, cpu = time.perf_counter(), time.process_time()
    await call()
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000


async def bench_ranker(count: int, rounds: int) -> dict[str, list[Sample]]:
    facts = make_facts(count)
    figures: dict[str, list[Sample]] = {"warm": [], "one fact changed": [], "cold": []}
    for round_index in range(max(3, rounds // 20)):
        cold = FactRanker()
        query = QUERIES[round_index % len(QUERIES)]
        figures["cold"].append(await timed(lambda: cold.rank(query, facts, limit=LIMIT)))  # noqa: B023 - awaited at once
        cold.close()
    ranker = FactRanker()
    await ranker.rank("warm up", facts)
    for index in range(rounds):
        query = QUERIES[index % len(QUERIES)]
        figures["warm"].append(await timed(lambda: ranker.rank(query, facts, limit=LIMIT)))  # noqa: B023
        changed = [*facts[:-1], replace(facts[-1], id=f"c{index:07x}", text=f"changed fact {index} coffee")]
        figures["one fact changed"].append(await timed(lambda: ranker.rank("coffee", changed, limit=LIMIT)))  # noqa: B023
    ranker.close()
    return figures


async def bench_file_recall(directory: Path, rounds: int) -> list[Sample]:
    ranker = FactRanker()
    async with FileFactStore(directory, limits=FactLimits(max_total_chars=10**6)) as store:
        for fact in make_facts(200):
            await store.add(1, fact.text, FactSource("bench"))

        async def recall() -> None:
            await ranker.rank("coffee in Berlin", await store.list_for_user(1), limit=LIMIT)

        await recall()
        samples = [await timed(recall) for _ in range(rounds)]
    ranker.close()
    return samples


def row(label: str, count: int, samples: list[Sample]) -> list[str]:
    wall = [sample[0] for sample in samples]
    cpu = [sample[1] for sample in samples]
    return [
        label,
        f"{count:,}",
        f"{median(wall):.2f}",
        f"{percentile(wall, 0.99):.2f}",
        f"{median(cpu):.2f}",
        str(len(samples)),
    ]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--dir", type=Path, help="directory for the file store (default: a temporary one)")
    arguments = parser.parse_args()
    rounds = 60 if arguments.quick else 300
    rows = []
    warm_2000 = 0.0
    for count in (200, 2_000):
        figures = await bench_ranker(count, rounds)
        rows += [row(f"rank, {label}", count, samples) for label, samples in figures.items()]
        if count == 2_000:
            warm_2000 = median([wall for wall, _ in figures["warm"]])
    with tempfile.TemporaryDirectory(dir=arguments.dir) as directory:
        rows.append(row("file store list + rank, warm", 200, await bench_file_recall(Path(directory), rounds)))
    print(format_table(["recall", "facts", "median ms", "p99 ms", "CPU median ms", "samples"], rows))
    verdict = "meets" if warm_2000 < TARGET_MS else "MISSES"
    print(f"\nwarm recall at 2,000 facts: {warm_2000:.2f} ms median, {verdict} the {TARGET_MS:.0f} ms target")
    return 0 if warm_2000 < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
