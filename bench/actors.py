"""Actor runtime benchmark: messages per second through registry -> actor -> reply, ask latency,
and memory per idle actor.

    .venv/bin/python bench/actors.py [--quick]

Throughput: a no-op handler; callers fan out `registry.actor_for(id).ask_future(msg)` up to the
mailbox size per conversation, then wait for the replies, over 1, 100 and 10,000 conversations
(actors spawned beforehand; the median of 5 runs is printed). Latency: one `await
registry.ask(id, msg)` at a time, so it is the round trip of a single message (its reciprocal is
the one-at-a-time rate, for callers that never have more than one message in flight). Memory:
tracemalloc's traced bytes for 10,000 actors that have each handled one message and now wait
idle, divided by 10,000 (everything an actor costs: actor, mailbox, task, coroutine frame,
supervisor child, registry entry). The process is pinned to one CPU where the OS allows it;
asyncio runs on one thread anyway.

Targets (issue 2, item 7): at least 100,000 messages/s on one core; at most 10 KB per idle actor.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from actors.registry import ConversationRegistry
from actors.runtime import Actor
from actors.supervisor import Supervisor
from conf import ActorSettings, BackoffSettings

TARGET_MSGS_PER_S = 100_000
TARGET_BYTES_PER_IDLE_ACTOR = 10 * 1024
MAILBOX_SIZE = ActorSettings().mailbox_size  # the shipped default (64)
RUNS = 5


class Noop(Actor[Any]):
    """Answers every message with itself."""

    async def handle(self, message: Any) -> Any:
        return message


def new_registry() -> ConversationRegistry[Noop]:
    supervisor = Supervisor("bench", backoff=BackoffSettings(), max_restarts=5, window_seconds=60)
    return ConversationRegistry(lambda cid: Noop(f"conversation:{cid}", MAILBOX_SIZE), supervisor, idle_seconds=600)


async def spawn(registry: ConversationRegistry[Noop], ids: list[str]) -> None:
    """Activate every conversation (one message each), so runs measure messages, not spawning."""
    await asyncio.gather(*(registry.actor_for(cid).ask_future(None) for cid in ids))


async def pump(registry: ConversationRegistry[Noop], ids: list[str], messages: int) -> float:
    """Send `messages` asks spread over `ids`, at most a mailbox-full per conversation in flight;
    returns messages per second."""
    per_round = max(1, min(MAILBOX_SIZE, messages // len(ids)))
    rounds = max(1, messages // (per_round * len(ids)))
    sent = 0
    started = time.perf_counter()
    for _ in range(rounds):
        # Every message is routed by the registry, as the gateway routes each update.
        replies = [registry.actor_for(cid).ask_future(index) for cid in ids for index in range(per_round)]
        for reply in replies:
            await reply
        sent += len(replies)
    return sent / (time.perf_counter() - started)


async def latencies(registry: ConversationRegistry[Noop], ids: list[str], count: int) -> list[float]:
    """Round trips of single asks, one at a time, in microseconds."""
    out = []
    for index in range(count):
        cid = ids[index % len(ids)]
        started = time.perf_counter()
        await registry.ask(cid, index)
        out.append((time.perf_counter() - started) * 1e6)
    return out


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def throughput_row(conversations: int, messages: int, asks: int) -> dict[str, Any]:
    registry = new_registry()
    ids = [f"chat-{index}" for index in range(conversations)]
    await spawn(registry, ids)
    await pump(registry, ids, min(messages, 10_000))  # warm-up
    rates = []
    for _ in range(RUNS):
        gc.collect()
        rates.append(await pump(registry, ids, messages))
    lat = await latencies(registry, ids, asks)
    await registry.stop(10.0)
    return {
        "conversations": conversations,
        "messages": messages,
        "rate": statistics.median(rates),
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "serial": 1e6 / statistics.fmean(lat),
    }


async def idle_memory(actors: int) -> tuple[float, list[tuple[str, float]]]:
    """Bytes per idle actor, and the biggest contributors (file:line, bytes per actor)."""
    registry = new_registry()
    ids = [f"chat-{index}" for index in range(actors)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    base = tracemalloc.get_traced_memory()[0]
    await spawn(registry, ids)
    for _ in range(3):  # let every actor settle back into waiting on its mailbox
        await asyncio.sleep(0)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    top = after.compare_to(before, "lineno")[:6]
    where = [
        (f"{Path(stat.traceback[0].filename).name}:{stat.traceback[0].lineno}", stat.size_diff / actors) for stat in top
    ]
    await registry.stop(10.0)
    return used / actors, where


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def main(quick: bool) -> int:
    # Info logs from the runtime are not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    messages = 20_000 if quick else 200_000
    asks = 500 if quick else 5_000
    rows = [await throughput_row(n, messages, asks) for n in (1, 100, 10_000)]
    per_actor, where = await idle_memory(10_000)

    print(f"Actor runtime: registry -> actor -> reply, no-op handler, mailbox {MAILBOX_SIZE}, {RUNS} runs each")
    print()
    print(
        "| conversations | messages/run | msgs/s (median of 5) | target >= 100,000/s "
        "| ask p50 (us) | ask p99 (us) | one-at-a-time asks/s |"
    )
    print("| ---: | ---: | ---: | :---: | ---: | ---: | ---: |")
    ok = True
    for row in rows:
        passed = row["rate"] >= TARGET_MSGS_PER_S
        ok &= passed
        print(
            f"| {row['conversations']:,} | {row['messages']:,} | {row['rate']:,.0f} | {mark(passed)} "
            f"| {row['p50']:.1f} | {row['p99']:.1f} | {row['serial']:,.0f} |"
        )
    print()
    passed = per_actor <= TARGET_BYTES_PER_IDLE_ACTOR
    ok &= passed
    print("| idle actors | bytes per idle actor (tracemalloc) | target <= 10,240 B |")
    print("| ---: | ---: | :---: |")
    print(f"| 10,000 | {per_actor:,.0f} | {mark(passed)} |")
    print()
    print("Where an idle actor's bytes go (top allocation sites, bytes per actor):")
    for site, size in where:
        print(f"  {site:<28} {size:7.0f}")
    return 0 if ok else 1


def pin_to_one_cpu() -> str:
    """Run on one core, as the target says; returns which, for the record."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages per run (a few seconds in all)")
    arguments = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {pin_to_one_cpu()}")
    sys.exit(asyncio.run(main(arguments.quick)))
