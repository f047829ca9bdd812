"""Scale-out benchmark: one gateway and 1, 2 or 4 worker processes on the SQS FIFO queue and DynamoDB
of moto's server (serialised, as in the tests), against the fake Bot API and the fake model.

For each configuration, `--messages` messages over `--chats` chats are queued at once; it reports
messages per second until the last reply, p50/p99 reply latency (from queuing the update to the
reply reaching the fake Bot API), and the DynamoDB and SQS requests per turn, counted by a proxy in
front of moto (which the processes use as their endpoint). A first row is one process without the
queue (DynamoDB store and ingress log), for comparison. moto is slow and serialised, so this shows
the shape (does throughput grow with workers until the fake saturates?), not AWS's speed; the calls
per turn are what AWS bills.

    .venv/bin/python bench/scale.py [--quick] [--workers 1,2,4]

Prints a table and writes bench/out/scale.csv and bench/out/scale.png (matplotlib if installed,
else bench/out/scale.svg, a bar chart drawn by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench._harness import BotProcess, format_table, median, percentile  # noqa: E402
from tests.fakes.llm_server import FakeLLMServer  # noqa: E402
from tests.fakes.moto_serialised import serialised_moto_server  # noqa: E402
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402
from tests.scale_support import REGION, make_fifo_queue, make_tables, scale_config, scale_env  # noqa: E402

OUT = _BENCH / "out"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


class CountingProxy:
    """An HTTP proxy to moto that counts requests by operation (`X-Amz-Target`)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, listener).start()
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "?")
        service, _, operation = target.partition(".")
        self.counts[("sqs:" if "SQS" in service else "dynamodb:") + operation] += 1
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as r:
            data = await r.read()
            if operation == "ReceiveMessage" and b'"Messages"' not in data:
                self.counts["sqs:ReceiveMessage(empty)"] += 1
            response = web.Response(status=r.status, body=data)
            response.headers["Content-Type"] = r.headers.get("Content-Type", "application/x-amz-json-1.0")
            return response


@dataclass
class Result:
    """One configuration's figures."""

    label: str
    workers: int
    messages: int
    seconds: float
    p50_ms: float
    p99_ms: float
    calls: Counter[str]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def per_turn(self, prefix: str, *, skip_empty: bool = True) -> float:
        """Requests of one service (`dynamodb:` or `sqs:`) per turn; empty long polls left out unless asked."""
        total = sum(count for name, count in self.calls.items() if name.startswith(prefix) and "(empty)" not in name)
        if skip_empty and prefix == "sqs:":
            total -= self.calls.get("sqs:ReceiveMessage(empty)", 0)
        return total / self.messages


async def run_config(
    label: str, workers: int, *, endpoint: str, tg: FakeTelegramServer, llm: FakeLLMServer, sizes: argparse.Namespace
) -> Result:
    """Start the processes of one configuration, push the load through, stop them."""
    name = f"bench-{workers}-{int(time.time() * 1000)}"
    queue = await make_fifo_queue(endpoint, name, visibility=30)
    await make_tables(endpoint, name)
    proxy = CountingProxy(endpoint)
    await proxy.start()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = _env(work, tg, llm, scale_env(proxy.url, queue, name, scale_config(work / "config.yml", visibility=30)))
    if workers == 0:
        env.pop("INGRESS_QUEUE_URL")
        commands = [("single", ["main.py"])]
    else:
        commands = [("gateway", ["main.py", "--role", "gateway"])]
        commands += [(f"worker{index}", ["main.py", "--role", "worker"]) for index in range(workers)]
    processes = [BotProcess(who, argv, env, work / f"{who}.log") for who, argv in commands]
    try:
        for process in processes:
            process.__enter__()
        await _warm_up(tg, processes, max(4, workers * 2))
        proxy.counts.clear()
        already = len(tg.sent)
        queued: dict[str, float] = {}
        started = time.monotonic()
        for index in range(sizes.messages):
            text = f"m{index}"
            queued[f"echo: {text}"] = time.monotonic()
            tg.add_text_message(1 + index % sizes.chats, text)
        deadline = time.monotonic() + 300
        while len(tg.sent) - already < sizes.messages:
            for process in processes:
                process.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(tg.sent) - already} of {sizes.messages} replies arrived")
            await asyncio.sleep(0.02)
        replies = tg.sent[already:]
        seconds = max(message.time for message in replies) - started
        latencies = [(m.time - queued[m.text]) * 1000 for m in replies if m.text in queued]
        calls = Counter(proxy.counts)
    finally:
        for process in processes:
            process.stop()
        await proxy.stop()
    return Result(label, workers, sizes.messages, seconds, median(latencies), percentile(latencies, 0.99), calls)


def _env(work: Path, tg: FakeTelegramServer, llm: FakeLLMServer, scale: dict[str, str]) -> dict[str, str]:
    """The processes' environment: the fakes, no MCP server, and the queue and tables of `scale`."""
    mcp = work / "mcp.yml"
    mcp.write_text("servers: {}\n")
    return {
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_BASE_URL": tg.base_url,
        "TELEGRAM_ALLOWED_USER_IDS": "*",
        "LLM_BASE_URL": llm.openai_base_url,
        "LLM_API_KEY": "sk-bench",
        "MCP_CONFIG": str(mcp),
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
        **scale,
        **AWS_ENV,
    }


async def _warm_up(tg: FakeTelegramServer, processes: list[BotProcess], chats: int) -> None:
    """One message in each of `chats` chats, answered (model SDK loaded, clients open) before measuring."""
    base = 9_000_000
    for chat in range(chats):
        tg.add_text_message(base + chat, "warm up")
    deadline = time.monotonic() + 90
    while len([m for m in tg.sent if int(m.chat_id) >= base]) < chats:
        for process in processes:
            process.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("warm-up replies did not arrive")
        await asyncio.sleep(0.05)


def table(results: list[Result]) -> str:
    """The Markdown table of the results."""
    rows = [
        [
            r.label,
            f"{r.rate:.1f}",
            f"{r.p50_ms:.0f}",
            f"{r.p99_ms:.0f}",
            f"{r.per_turn('dynamodb:'):.2f}",
            f"{r.per_turn('sqs:'):.2f}",
            f"{r.calls.get('sqs:ReceiveMessage(empty)', 0) / r.messages:.2f}",
        ]
        for r in results
    ]
    headers = [
        "configuration",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "DynamoDB calls/turn",
        "SQS calls/turn",
        "+ empty polls/turn",
    ]
    return format_table(headers, rows)


def breakdown(result: Result) -> str:
    """Calls per turn by operation, for one configuration."""
    rows = [
        [name, f"{count / result.messages:.2f}"]
        for name, count in sorted(result.calls.items())
        if count and name != "sqs:ReceiveMessage(empty)"
    ]
    return format_table(["operation", "per turn"], rows)


def draw(results: list[Result]) -> Path:
    """bench/out/scale.png (matplotlib) or scale.svg (by hand); returns the path."""
    OUT.mkdir(exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        width = 120 * len(results) + 40
        top = max(r.rate for r in results) or 1
        bars = "".join(
            f'<rect x="{40 + 120 * i}" y="{260 - 220 * r.rate / top:.0f}" width="80" height="{220 * r.rate / top:.0f}" '
            f'fill="steelblue"/><text x="{40 + 120 * i}" y="280" font-size="12">{r.label}: {r.rate:.1f}/s</text>'
            for i, r in enumerate(results)
        )
        path = OUT / "scale.svg"
        path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="300">{bars}</svg>')
        return path
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [r.label for r in results]
    left.bar(labels, [r.rate for r in results], color="steelblue")
    left.set_ylabel("messages / s")
    left.set_title("Throughput (moto, fake model)")
    right.bar(labels, [r.p99_ms for r in results], color="indianred")
    right.set_ylabel("p99 reply latency, ms")
    right.set_title("p99 latency")
    figure.tight_layout()
    path = OUT / "scale.png"
    figure.savefig(path, dpi=100)
    return path


def write_csv(results: list[Result]) -> Path:
    """bench/out/scale.csv."""
    OUT.mkdir(exist_ok=True)
    path = OUT / "scale.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["configuration", "workers", "msg_per_s", "p50_ms", "p99_ms", "calls"])
        for r in results:
            writer.writerow(
                [r.label, r.workers, f"{r.rate:.2f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", json.dumps(r.calls)]
            )
    return path


async def main_async(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    os.environ.update(AWS_ENV)
    with serialised_moto_server() as endpoint, FakeTelegramServer() as tg, FakeLLMServer() as llm:
        configs = [("1 process, no queue", 0)] + [
            (f"gateway + {n} worker{'s' if n > 1 else ''}", n) for n in args.workers
        ]
        for label, workers in configs:
            result = await run_config(label, workers, endpoint=endpoint, tg=tg, llm=llm, sizes=args)
            print(f"{label}: {result.rate:.1f} msg/s, p99 {result.p99_ms:.0f} ms", flush=True)
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure (default 1,2,4)")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--chats", type=int, default=150)
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    if args.quick:
        args.messages, args.chats = 80, 40
    results = asyncio.run(main_async(args))
    print()
    print(table(results))
    print()
    print(f"Calls per turn by operation ({results[-1].label}):")
    print(breakdown(results[-1]))
    print()
    print(f"wrote {write_csv(results)} and {draw(results)}")


if __name__ == "__main__":
    main()
