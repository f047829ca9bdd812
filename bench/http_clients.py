"""CPU per request of the HTTP paths the assistant uses, httpx against aiohttp (issue 17).

The fakes run in processes of their own (bench/_fakes.py), so this process's CPU time is the
client's alone. For each path, `--requests` calls at a concurrency of `--concurrency`:

  telegram  PTB's `Bot.send_message` through `HTTPXRequest` / our `AiohttpRequest`, and (`lean`)
            `Bot.do_api_request` through `AiohttpRequest`, the path of a reply (channels/telegram/_api.py)
  openai    a streamed `post('/chat/completions')` through the openai SDK's `DefaultAsyncHttpxClient` /
            `DefaultAioHttpClient`, and (`lean`) the same request straight over aiohttp with the SDK's
            headers (llm/_direct.py, the path llm/_clients.py takes)

    .venv/bin/python bench/http_clients.py [--requests 2000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._fakes import Fakes  # noqa: E402
from bench._harness import format_table  # noqa: E402

TOKEN = "123456:TEST-bench-token"
KINDS = ("httpx", "aiohttp", "lean")


async def _measure(call: Callable[[int], Awaitable[object]], requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU ms per request, wall ms per request) of `requests` calls, `concurrency` at a time."""
    for i in range(min(concurrency, 20)):  # warm up: connections, lazy imports
        await call(i)
    queue = iter(range(requests))

    async def worker() -> None:
        for i in queue:
            await call(i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) * 1000 / requests, (time.perf_counter() - wall) * 1000 / requests


async def telegram_path(fakes: Fakes, kind: str, requests: int, concurrency: int) -> tuple[float, float]:
    """Bot.send_message through one of the two request classes."""
    from telegram import Bot
    from telegram.request import BaseRequest, HTTPXRequest

    from channels.telegram._api import SEND_MESSAGE, send_message_parameters
    from channels.telegram.aiohttp_request import AiohttpRequest

    request: BaseRequest
    if kind == "httpx":
        request = HTTPXRequest(connection_pool_size=concurrency, read_timeout=20, connect_timeout=10)
    else:
        request = AiohttpRequest(connection_pool_size=concurrency, read_timeout=20, connect_timeout=10)
    bot = Bot(TOKEN, base_url=fakes.tg.base_url(), request=request)
    fakes.tg.add_text_messages([(1000 + i, "hi") for i in range(concurrency)])  # the chats exist

    async def call(i: int) -> object:
        if kind == "lean":
            parameters = send_message_parameters(1000 + i % concurrency, f"reply {i}", None, None, None)
            return await bot.do_api_request(SEND_MESSAGE, api_kwargs=parameters)
        return await bot.send_message(1000 + i % concurrency, f"reply {i}")

    try:
        return await _measure(call, requests, concurrency)
    finally:
        await request.shutdown()


async def openai_path(fakes: Fakes, kind: str, requests: int, concurrency: int) -> tuple[float, float]:
    """A streamed chat completion read to its end: through the SDK's generic post, or (`lean`) as
    llm/_direct.py sends it."""
    import httpx2
    import openai

    from llm._direct import DirectStreams, sdk_request_headers

    http = openai.DefaultAsyncHttpxClient() if kind == "httpx" else openai.DefaultAioHttpClient()
    client = openai.AsyncOpenAI(api_key="k", base_url=fakes.llm.openai_base_url(), max_retries=0, http_client=http)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    url = str(client.base_url).rstrip("/") + "/chat/completions"
    direct = DirectStreams("openai", url, sdk_request_headers(client), httpx2.create_ssl_context(), 60.0)

    async def call(i: int) -> object:
        if kind == "lean":
            async with direct.open(body, None) as chunks:
                return [chunk async for chunk in chunks]
        stream = await client.post(
            "/chat/completions", body=body, cast_to=object, stream=True, stream_cls=openai.AsyncStream[object]
        )
        try:
            return [chunk async for chunk in stream.response.aiter_bytes()]
        finally:
            await stream.response.aclose()

    try:
        return await _measure(call, requests, concurrency)
    finally:
        await client.close()
        await direct.close()


def main() -> int:
    """Measure each path with each library, print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with Fakes(TOKEN, 0.0) as fakes:
        for path, run in (("telegram", telegram_path), ("openai", openai_path)):
            figures = {kind: asyncio.run(run(fakes, kind, args.requests, args.concurrency)) for kind in KINDS}
            cpu_x = figures["httpx"][0]
            rows.append(
                [path]
                + [f"{figures[kind][0]:.3f}" for kind in KINDS]
                + [f"{figures['lean'][0] / cpu_x:.2f}"]
                + [f"{figures[kind][1]:.3f}" for kind in KINDS]
            )
    headers = ["path", *(f"{kind} CPU ms/req" for kind in KINDS), "lean/httpx", *(f"{kind} wall ms" for kind in KINDS)]
    print(format_table(headers, rows))
    print(f"{args.requests} requests, {args.concurrency} at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
