"""The webhook with `python main.py` as a real process, killed with kill -9 just before and just
after the ingress log (DynamoDB on moto's server) holds an update Telegram is posting: either way,
Telegram's retry (and the replay at the next start) gets it answered once and stored once."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import pytest
from aiohttp import web

from tests.e2e_support import AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.moto_serialised import serialised_moto_server
from tests.fakes.moto_server import LoopbackProxy, fake_aws_credentials
from tests.fakes.telegram_server import FakeTelegramServer
from tests.scale_support import REGION, make_tables, stored_records

pytestmark = pytest.mark.slow

SECRET = "kill_9-secret"
_names = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serialised_moto_server() as url:
        yield url


class HoldingProxy(LoopbackProxy):
    """A proxy to DynamoDB that holds the ingress log's write: `before` it reaches the table, or
    `after` the table took it (its answer never comes back); `held` is set when it does."""

    def __init__(self, upstream: str, hold: Literal["before", "after"]) -> None:
        super().__init__(upstream)
        self.hold: Literal["before", "after"] | None = hold
        self.held = asyncio.Event()
        self._closing = asyncio.Event()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()  # what is held ends (its process is long dead), so the server can stop
        await super().__aexit__(exc_type, exc, tb)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ingress_write = request.headers.get("X-Amz-Target", "").endswith("BatchWriteItem") and b'"ingress"' in body
        if ingress_write and self.hold == "before":
            self.held.set()
            await self._closing.wait()  # the process is killed meanwhile
            return web.Response(status=503)
        answer = await self._forward(request, body)
        if ingress_write and self.hold == "after":
            self.held.set()
            await self._closing.wait()
        return answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("hold", ["before", "after"])
async def test_kill_9_around_the_append_still_answers_once(
    tg: FakeTelegramServer,
    llm: FakeLLMServer,
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hold: Literal["before", "after"],
) -> None:
    fake_aws_credentials(monkeypatch)
    tg.webhook_max_attempts = 40  # Telegram retries for a day; here long enough for a restart
    table = f"hook-{next(_names)}"
    await make_tables(endpoint, table)
    port = free_port()
    async with HoldingProxy(endpoint, hold) as proxy:
        env = assistant_env(
            tg,
            llm,
            tmp_path / "store",
            STORE_BACKEND="dynamodb",
            DYNAMODB_TABLE=table,
            DYNAMODB_ENDPOINT_URL=proxy.url,
            AWS_REGION=REGION,
            TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/hook",
            TELEGRAM_WEBHOOK_SECRET=SECRET,
            WEBHOOK_PORT=str(port),
        )
        process = AssistantProcess(env, tmp_path / "assistant.log")
        process.start()
        try:
            update_id = tg.add_text_message(42, "through a crash")
            await asyncio.wait_for(proxy.held.wait(), 30)
            process.kill9()
            assert tg.webhook_delivered == []  # never answered 200
            proxy.hold = None
            process.start()
            [answer] = await tg.await_sent(chat_id=42, timeout=30)
            assert answer.text == "echo: through a crash"
            await tg.await_webhook_delivered(update_id, timeout=30)
            tg.add_text_message(42, "and on")
            sent = await tg.await_sent(chat_id=42, count=2, timeout=20)
            assert [message.text for message in sent] == ["echo: through a crash", "echo: and on"]
            assert await asyncio.to_thread(process.terminate) == 0, process.log_text()[-3000:]
        finally:
            process.ensure_dead()
    records = await stored_records(endpoint, table, "42")
    users = [record["update_id"] for record in records if record.get("role") == "user"]
    assert users == [update_id, update_id + 1]
    assert [record["update_id"] for record in records if record.get("type") == "delivered"] == users
