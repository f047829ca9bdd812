"""The gateway under outages and floods: /healthz tells the truth, strangers cost nothing, no task is
left without an owner, "typing..." never delays a reply, and notices are never sent twice."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors import texts
from actors.registry import ConversationRegistry
from actors.supervisor import Supervisor
from channels.telegram.client import TelegramClient
from channels.telegram.gateway import TelegramChannel, TelegramGateway
from channels.telegram.sender import TelegramSender
from ops.backoff import Backoff
from stores import InMemoryIngressLog
from tests.e2e_support import assistant_env, fast_settings, moto_dynamodb, running
from tests.fakes.llm_server import FakeLLMRequest, FakeLLMServer, Reply
from tests.fakes.telegram_server import FakeTelegramServer
from tests.test_e2e_gateway_faults import with_changes


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> dict[str, str]:
    return assistant_env(tg, llm, tmp_path / "store")


async def next_polls(tg: FakeTelegramServer, count: int, timeout: float = 10.0) -> None:
    """Until `count` more getUpdates calls have reached the fake."""
    await tg.await_calls("getUpdates", count=tg.calls.count("getUpdates") + count, timeout=timeout)


async def test_healthz_is_200_again_at_once_when_a_telegram_outage_ends(
    tg: FakeTelegramServer, env: dict[str, str]
) -> None:
    # Long polls of 3 s stand for Telegram's 30 s: the first good poll after an outage used to end
    # only when its long poll did, so /healthz said 503 for a whole poll after Telegram was back.
    settings = with_changes(fast_settings(env), telegram={"poll_timeout_seconds": 3, "watchdog_seconds": 3.5})
    with capture_logs() as logs:
        async with running(settings) as system:
            gateway = system.gateway
            assert isinstance(gateway, TelegramGateway)
            await next_polls(tg, 2)
            tg.getupdates_outage(True)
            while not any(entry["event"] == "telegram_poll_stalled" for entry in logs):
                await next_polls(tg, 1)
            assert gateway.health()[0] is False
            # No poll succeeds during the outage, so the event is set again only by the first good
            # poll after it: a short one that answers at once, not a 3 s long poll.
            gateway.polling.clear()
            tg.getupdates_outage(False)
            await asyncio.wait_for(gateway.polling.wait(), 1.5)
            assert gateway.health()[0] is True


async def test_healthz_is_503_while_the_ingress_log_refuses_updates(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from stores._dynamodb_table import PARTITION_KEY, SORT_KEY
    from tests.fakes.moto_server import REGION

    with moto_dynamodb(monkeypatch, "health-conversations", region=REGION) as variables:
        env = assistant_env(tg, llm, tmp_path / "unused", **variables)
        dynamodb = boto3.client("dynamodb", endpoint_url=variables["DYNAMODB_ENDPOINT_URL"], region_name=REGION)
        definition: dict[str, Any] = {
            "TableName": "health-conversations",
            "KeySchema": [
                {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": [
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": SORT_KEY, "AttributeType": "N"},
            ],
            "BillingMode": "PAY_PER_REQUEST",
        }
        with capture_logs() as logs:
            async with running(fast_settings(env)) as system:
                gateway = system.gateway
                assert isinstance(gateway, TelegramGateway)
                await next_polls(tg, 2)
                assert gateway.health()[0] is True
                await asyncio.to_thread(dynamodb.delete_table, TableName="health-conversations")
                tg.add_text_message(42, "is anyone there?")
                while not any(entry["event"] == "ingress_append_failed" for entry in logs):
                    await next_polls(tg, 1)
                ok, body = gateway.health()
                assert ok is False
                assert body["status"] == "ingress_failing"
                await asyncio.to_thread(lambda: dynamodb.create_table(**definition))
                # The message was routed as its ingress write ran: the chat tells of its storage and
                # answers once it can, and /healthz is 200 again once a poll's write succeeds.
                async with asyncio.timeout(15):
                    while "echo: is anyone there?" not in [message.text for message in tg.sent_to(42)]:
                        await next_polls(tg, 1)
                    while not gateway.health()[0]:
                        await next_polls(tg, 1)
    assert [message.text for message in tg.sent_to(42)] == [texts.STORE_UNAVAILABLE, "echo: is anyone there?"]


async def test_a_poll_cut_off_by_its_outer_timeout_leaves_no_task_behind(
    tg: FakeTelegramServer, env: dict[str, str]
) -> None:
    # A proxy that keeps the connection alive with a byte now and then defeats httpx's read timeout;
    # the gateway's own bound on the poll must then end the request it made, not abandon it.
    settings = with_changes(fast_settings(env), telegram={"poll_timeout_seconds": 0})
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    supervisor = Supervisor("test", backoff=settings.backoff, max_restarts=0, window_seconds=1.0)
    registry: ConversationRegistry[Any] = ConversationRegistry(
        lambda _: pytest.fail("no actor"), supervisor, idle_seconds=60
    )
    ingress = InMemoryIngressLog()
    tg.getupdates_trickle = 0.05
    try:
        async with TelegramClient(settings.telegram, pool_size=1, read_timeout=5.0) as client:
            sender = TelegramSender(client.bot, Backoff(settings.backoff))
            channel = TelegramChannel(sender, ingress)
            gateway = TelegramGateway(
                settings, registry, ingress, bot=client.bot, channel=channel, poll_margin_seconds=0.3
            )
            with capture_logs() as logs:
                task = asyncio.create_task(gateway.run())
                await tg.await_calls("getUpdates", count=3, timeout=10)  # two polls were cut off
                gateway.stop()
                tg.getupdates_trickle = 0.0
                await asyncio.wait_for(task, 10)
        gc.collect()  # an abandoned task that failed reports it when it is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert [entry["error"] for entry in logs if entry["event"] == "telegram_poll_failed"][:1] == ["TimeoutError()"]
    assert unhandled == []


async def test_typing_never_holds_a_connection_a_reply_waits_for(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    tg.chat_action_latency = 2.0

    def slow_in_chat_1(request: FakeLLMRequest) -> Reply | None:
        return Reply("slow", first_token_delay=2.0) if request.last_user_text == "take your time" else None

    llm.script(slow_in_chat_1)
    settings = with_changes(fast_settings(env), telegram={"send_connections": 1, "typing_delay_seconds": 0.0})
    async with running(settings):
        tg.add_text_message(1, "take your time")
        await tg.await_calls("sendChatAction", count=1, timeout=10)  # chat 1's "typing..." is in flight
        sent_at = time.monotonic()
        tg.add_text_message(2, "quick")
        [reply] = await tg.await_sent(chat_id=2, timeout=10)
        waited = time.monotonic() - sent_at
        await tg.await_sent(chat_id=1, timeout=10)
    assert reply.text == "echo: quick"
    assert waited < 1.5  # the slow chat action (2 s) did not stand between the answer and Telegram


async def test_a_flood_of_strangers_costs_nothing_and_never_slows_an_allowed_user(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_ALLOWED_USER_IDS="42")
    strangers = list(range(1000, 1010))
    waits: list[float] = []
    async with running(fast_settings(env)):
        await next_polls(tg, 1)
        for round_ in range(5):
            for index in range(200):
                tg.add_text_message(strangers[index % len(strangers)], f"let me in {round_}.{index}")
            sent_at = time.monotonic()
            tg.add_text_message(42, f"hello {round_}")
            await tg.await_sent(chat_id=42, count=round_ + 1, timeout=10)
            waits.append(time.monotonic() - sent_at)
        await next_polls(tg, 2)
    refused = sorted(message.chat_id for message in tg.sent if message.chat_id != 42)
    assert refused == strangers  # one refusal each, for 100 messages each
    assert all(m.text == texts.NOT_ALLOWED.format(user_id=m.chat_id) for m in tg.sent if m.chat_id != 42)
    assert [message.text for message in tg.sent_to(42)] == [f"echo: hello {index}" for index in range(5)]
    ingress = (tmp_path / "store" / "_ingress" / "updates.jsonl").read_text()
    assert "let me in" not in ingress  # nothing written for them
    assert max(waits) < 1.5, waits


async def test_a_refusal_is_not_sent_again_after_a_restart(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_ALLOWED_USER_IDS="42")
    settings = with_changes(fast_settings(env), actors={"stop_grace_seconds": 0.5})
    tg.fail_next("sendMessage", 429, retry_after=30, chat_id=5)  # the refusal waits past the stop
    async with running(settings):
        tg.add_text_message(5, "let me in")
        await tg.await_calls("sendMessage", count=1, timeout=10)
    async with running(settings):
        tg.add_text_message(42, "hello")
        await tg.await_sent(chat_id=42, timeout=10)
    assert tg.sent_to(5) == []  # at most one refusal: this one was lost with the stop, never repeated


async def test_a_busy_notice_is_not_sent_again_after_a_restart(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    llm.latency = 0.5
    settings = with_changes(fast_settings(env), actors={"mailbox_size": 1, "stop_grace_seconds": 0.5})
    tg.fail_next("sendMessage", 429, retry_after=30, chat_id=42)  # the first busy notice waits past the stop
    async with running(settings):
        for index in range(3):
            tg.add_text_message(42, f"m{index}")
        await tg.await_calls("sendMessage", count=1, timeout=10)
    async with running(settings):
        tg.add_text_message(42, "after")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=10)
    # The message that was taken is answered once (before the stop or after the restart); those
    # refused as busy stay refused, and their notices, lost with the stop, are not sent again.
    assert [message.text for message in sent] == ["echo: m0", "echo: after"]


async def test_a_send_telegram_may_have_taken_is_sent_again_and_logged_as_uncertain(
    tg: FakeTelegramServer, env: dict[str, str]
) -> None:
    # The decision for a sendMessage that timed out: at least once. Telegram took the first copy but
    # its answer came too late; the Bot API cannot tell us so, and losing the answer would be worse.
    settings = with_changes(fast_settings(env), telegram={"send_timeout_seconds": 0.3})
    # Far longer than the timeout: a test process starved of CPU for a moment (two test workers on
    # two cores) sees the answer and its read timeout due together, and asyncio reads the answer
    # first; a second of latency made this test fail about once in a few hundred runs.
    tg.send_latency = 4.0
    with capture_logs() as logs:
        async with running(settings):
            tg.add_text_message(42, "hello")
            await tg.await_calls("sendMessage", count=1, timeout=10)
            tg.send_latency = 0.0  # the retry is answered at once
            # Sent again: a second sendMessage reached the server (whether the first, slow copy is
            # also recorded depends on when the fake finishes it, not on the assistant).
            await tg.await_calls("sendMessage", count=2, timeout=10)
            sent = await tg.await_sent(chat_id=42, count=1, timeout=10)
    assert {message.text for message in sent} == {"echo: hello"}
    assert [entry["event"] for entry in logs if entry["event"].startswith("telegram_send_")] == [
        "telegram_send_uncertain"
    ]
