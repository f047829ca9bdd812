"""Conversation store benchmark (issue 3): does appending stay O(1) as a history grows?

For the file store (on the disk under --dir, fsync included) and DynamoDB on moto's server
(over HTTP; for the shape of the figures, not AWS's speed):

  - append latency, one record, at history lengths 10, 1,000 and 10,000 (median of 200 appends
    to each, interleaved across the three histories)
    and the ratio of the last to the first, which must stay under 1.5 for the file store
  - load time of a 10,000-record history (median of 5 loads by a fresh store; 2 on moto)
  - appends/s across 100 conversations appending concurrently

    .venv/bin/python bench/stores.py [--quick] [--no-dynamodb] [--dir PATH]

Exits 1 if the file store's growth ratio is 1.5 or more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, and this file (stores.py) would
# shadow the project's `stores` package: put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import format_table  # noqa: E402
from conf.settings import DynamoDBSettings  # noqa: E402
from stores import ConversationStore, FileConversationStore, Record  # noqa: E402

LENGTHS = (10, 1_000, 10_000)
WARM_UP = 20
TEXT = "A typical chat message of a couple of sentences, about the size users send. " * 3


@dataclass
class Figures:
    """One backend's results."""

    append_ms: dict[int, float]
    load_ms: float
    appends_per_second: float

    @property
    def ratio(self) -> float:
        return self.append_ms[LENGTHS[-1]] / self.append_ms[LENGTHS[0]]


def record(seq: int) -> Record:
    return {"seq": seq, "role": "user" if seq % 2 == 0 else "assistant", "text": f"{seq}: {TEXT}"}


Seeder = Callable[[ConversationStore, str, int], Any]


async def seed_by_append(store: ConversationStore, conversation_id: str, count: int) -> None:
    for start in range(0, count, 1_000):
        await store.append(conversation_id, [record(seq) for seq in range(start, min(count, start + 1_000))])


async def measure(
    make_store: Callable[[], ConversationStore],
    seed: Seeder,
    appends: int,
    concurrent_each: int,
    loads_wanted: int = 5,
) -> Figures:
    async with make_store() as store:
        # The first calls pay for starting worker threads and HTTP connections, not for appending.
        await seed_by_append(store, "warm-up", WARM_UP)
        for length in LENGTHS:
            await seed(store, f"history-{length}", length)
        # Interleaved, so that noise from other processes falls on every length alike.
        samples: dict[int, list[float]] = {length: [] for length in LENGTHS}
        for offset in range(appends):
            for length in LENGTHS:
                started = time.perf_counter()
                await store.append(f"history-{length}", [record(length + offset)])
                samples[length].append((time.perf_counter() - started) * 1000)
        append_ms = {length: statistics.median(values) for length, values in samples.items()}
    loads = []
    for _ in range(loads_wanted):
        async with make_store() as store:
            started = time.perf_counter()
            loaded = await store.load(f"history-{LENGTHS[-1]}")
            loads.append((time.perf_counter() - started) * 1000)
        assert len(loaded) == LENGTHS[-1] + appends
    async with make_store() as store:

        async def converse(conversation_id: str) -> None:
            for seq in range(concurrent_each):
                await store.append(conversation_id, [record(seq)])

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for index in range(100):
                group.create_task(converse(f"concurrent-{index}"), name=f"bench-converse-{index}")
        elapsed = time.perf_counter() - started
    return Figures(append_ms, statistics.median(loads), 100 * concurrent_each / elapsed)


async def bench_file(directory: Path, appends: int, concurrent_each: int) -> Figures:
    return await measure(lambda: FileConversationStore(directory), seed_by_append, appends, concurrent_each)


async def bench_dynamodb(appends: int, concurrent_each: int) -> Figures:
    from stores.dynamodb import DynamoDBConversationStore, DynamoDBTable
    from tests.fakes.moto_server import moto_server

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(name, value)

    async def seed_by_batch(store: ConversationStore, conversation_id: str, count: int) -> None:
        # Conditional PutItems take ~3 ms each on moto: seed in the store's layout with
        # BatchWriteItem instead, then the measured appends go through the store.
        assert isinstance(store, DynamoDBConversationStore)
        from stores._dynamodb_table import partition_key
        from stores._records import encode_batch

        encoded = encode_batch(conversation_id, [record(seq) for seq in range(count)])
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "conversation_id": {"S": partition_key(conversation_id)},
                        "seq": {"N": str(item.seq)},
                        "record": {"S": item.data.decode()},
                    }
                }
            }
            for item in encoded
        ]
        await store._batch_write(requests)

    with moto_server() as endpoint:
        settings = DynamoDBSettings(
            table=f"bench-{uuid.uuid4().hex[:8]}", region="us-east-1", endpoint_url=endpoint, create_table=True
        )
        table = DynamoDBTable(settings)
        return await measure(
            lambda: DynamoDBConversationStore(settings, table=table), seed_by_batch, appends, concurrent_each, 2
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a run of a few seconds")
    parser.add_argument("--no-dynamodb", action="store_true", help="skip DynamoDB on moto")
    parser.add_argument("--dir", type=Path, default=None, help="where the file store writes (default: a temp dir)")
    args = parser.parse_args()
    appends = 30 if args.quick else 200
    concurrent_each = 5 if args.quick else 20

    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stores-", dir=args.dir) as directory:
        results["file"] = asyncio.run(bench_file(Path(directory), appends, concurrent_each))
    if not args.no_dynamodb:
        results["dynamodb (moto)"] = asyncio.run(bench_dynamodb(appends // 2, max(2, concurrent_each // 4)))

    names = list(results)
    rows = [
        *(
            [f"append median, history {length:,} (ms)", *(f"{results[name].append_ms[length]:.3f}" for name in names)]
            for length in LENGTHS
        ),
        [f"ratio {LENGTHS[-1]:,} / {LENGTHS[0]}", *(f"{results[name].ratio:.2f}" for name in names)],
        [f"load {LENGTHS[-1]:,} records, median (ms)", *(f"{results[name].load_ms:.1f}" for name in names)],
        ["appends/s, 100 concurrent conversations", *(f"{results[name].appends_per_second:,.0f}" for name in names)],
    ]
    print(format_table(["figure", *names], rows))
    ratio = results["file"].ratio
    verdict = "holds" if ratio < 1.5 else "FAILS"
    print(f"\nfile store growth ratio {ratio:.2f} (limit 1.5): {verdict}")
    run = "quick" if args.quick else "full"
    print(f"{run} run: {appends} appends per length (file), {appends // 2} (dynamodb), after {WARM_UP} warm-ups")
    return 0 if ratio < 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
