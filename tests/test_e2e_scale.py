"""One gateway and three workers as real processes (`python main.py --role ...`) on the SQS FIFO
queue and DynamoDB of moto's server (serialised: see tests/scale_support.py); a worker killed with
kill -9 mid-turn has its conversation answered by another within the visibility timeout, and every
chat keeps its order with each message stored once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_support import AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeLLMRequest, FakeLLMServer, Hang
from tests.fakes.moto_serialised import serialised_moto_server
from tests.fakes.moto_server import fake_aws_credentials
from tests.fakes.telegram_server import FakeTelegramServer
from tests.scale_support import make_fifo_queue, make_tables, scale_config, scale_env, stored_records

pytestmark = pytest.mark.slow

VISIBILITY = 2
_names = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with serialised_moto_server() as url:
        yield url


async def test_a_worker_killed_mid_turn_leaves_its_chat_to_another_and_nothing_is_stored_twice(
    tg: FakeTelegramServer, llm: FakeLLMServer, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_credentials(monkeypatch)
    table = f"scale-{next(_names)}"
    queue = await make_fifo_queue(endpoint, table, visibility=VISIBILITY)
    config = scale_config(tmp_path / "config.yml", visibility=VISIBILITY)
    env = assistant_env(tg, llm, tmp_path / "store", **scale_env(endpoint, queue, table, config))
    await make_tables(endpoint, table)
    hung = asyncio.Event()

    def handler(request: FakeLLMRequest) -> Hang | None:
        if request.last_user_text == "hold on" and not hung.is_set():
            hung.set()
            return Hang()
        return None

    llm.script(handler)
    gateway = AssistantProcess(env, tmp_path / "gateway.log", ("--role", "gateway"))
    workers = [
        AssistantProcess(env | {"LLM_MODEL": f"worker-{index}"}, tmp_path / f"worker{index}.log", ("--role", "worker"))
        for index in range(3)
    ]
    processes = [gateway, *workers]
    try:
        for process in processes:
            process.start()
        chats = list(range(1, 7))
        for chat in chats:
            tg.add_text_message(chat, f"hello {chat}")
        for chat in chats:
            await tg.await_sent(chat_id=chat, timeout=40)

        tg.add_text_message(100, "hold on")
        [request] = [r for r in await llm.await_requests(len(chats) + 1, timeout=20) if r.last_user_text == "hold on"]
        victim = workers[int(request.json["model"].removeprefix("worker-"))]
        tg.add_text_message(100, "and then")  # waits behind "hold on" in the same message group
        victim.kill9()
        killed_at = time.monotonic()
        answers = await tg.await_sent(chat_id=100, count=2, timeout=VISIBILITY + 15)
        assert [answer.text for answer in answers] == ["echo: hold on", "echo: and then"]
        taken_over = [r for r in llm.requests if r.last_user_text == "hold on"][-1]
        assert taken_over.json["model"] != request.json["model"]  # another worker took the chat over
        assert taken_over.received_at - killed_at < VISIBILITY + 3

        for chat in chats:
            tg.add_text_message(chat, f"again {chat}")
        for chat in chats:
            sent = await tg.await_sent(chat_id=chat, count=2, timeout=20)
            assert [message.text for message in sent] == [f"echo: hello {chat}", f"echo: again {chat}"]
        for process in processes:
            if process is not victim:
                assert await asyncio.to_thread(process.terminate) == 0, process.log_text()[-3000:]
    finally:
        for process in processes:
            process.ensure_dead()

    for chat in [*chats, 100]:
        records = await stored_records(endpoint, table, str(chat))
        users = [record["update_id"] for record in records if record.get("role") == "user"]
        delivered = [record["update_id"] for record in records if record.get("type") == "delivered"]
        assert users == sorted(set(users)), records
        assert len(users) == 2, records
        assert delivered == users
        assert [record["seq"] for record in records] == list(range(len(records)))
