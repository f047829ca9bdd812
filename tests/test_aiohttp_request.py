"""AiohttpRequest: python-telegram-bot over aiohttp against the fake Bot API, with HTTPXRequest's behaviour."""

from __future__ import annotations

import asyncio
import datetime as dtm
import socket
from pathlib import Path

import certifi
import pytest
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from channels.telegram.aiohttp_request import AiohttpRequest, request_maybe_taken, request_not_sent, tls_context
from tests.fakes.telegram_server import FakeTelegramServer


def _bot(tg: FakeTelegramServer, request: AiohttpRequest) -> Bot:
    return Bot(tg.token, base_url=tg.base_url, request=request)


async def test_calls_go_through_one_reused_connection(tg: FakeTelegramServer) -> None:
    tg.add_text_message(42, "hi")
    async with _bot(tg, AiohttpRequest(connection_pool_size=4)) as bot:
        for i in range(5):
            message = await bot.send_message(42, f"<b>reply {i}</b>", parse_mode="HTML")
            assert message.text == f"reply {i}"
    assert [m.visible_text for m in tg.sent] == [f"reply {i}" for i in range(5)]
    assert tg.connections_seen == 1  # getMe and five sends, one connection


async def test_concurrent_calls_stay_within_the_pool(tg: FakeTelegramServer) -> None:
    tg.send_latency = 0.05
    request = AiohttpRequest(connection_pool_size=2, pool_timeout=5)
    async with _bot(tg, request) as bot:
        await asyncio.gather(*(bot.send_message(chat_id, "hi") for chat_id in range(1, 9)))
    assert len(tg.sent) == 8
    assert tg.connections_seen <= 2


@pytest.mark.parametrize(
    ("status", "description", "error"),
    [
        (400, "Bad Request: chat not found", BadRequest),
        (403, "Forbidden: bot was blocked by the user", Forbidden),
        (502, None, NetworkError),
    ],
)
async def test_error_statuses_become_ptb_exceptions(
    tg: FakeTelegramServer, status: int, description: str | None, error: type[Exception]
) -> None:
    async with _bot(tg, AiohttpRequest()) as bot:
        tg.fail_next("sendMessage", status, description)
        with pytest.raises(error):
            await bot.send_message(1, "hi")
        assert (await bot.send_message(1, "again")).text == "again"  # the connection is still good


async def test_flood_control_is_retry_after_with_its_seconds(tg: FakeTelegramServer) -> None:
    async with _bot(tg, AiohttpRequest()) as bot:
        tg.fail_next("sendMessage", 429, retry_after=7)
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1, "hi")
    assert caught.value.retry_after in (7, dtm.timedelta(seconds=7))


async def test_a_slow_answer_is_a_timeout_telegram_may_have_taken(tg: FakeTelegramServer) -> None:
    tg.send_latency = 3.0  # far past the timeout, even for a test process short of CPU
    async with _bot(tg, AiohttpRequest(read_timeout=0.05)) as bot:
        with pytest.raises(TimedOut) as caught:
            await bot.send_message(1, "hi")
    assert request_maybe_taken(caught.value)
    assert not request_not_sent(caught.value)


async def test_a_busy_pool_is_a_timeout_that_sent_nothing(tg: FakeTelegramServer) -> None:
    tg.send_latency = 2.0
    async with _bot(tg, AiohttpRequest(connection_pool_size=1, pool_timeout=0.02)) as bot:
        results = await asyncio.gather(
            bot.send_message(1, "first"), bot.send_message(2, "second"), return_exceptions=True
        )
    [failure] = [result for result in results if isinstance(result, BaseException)]
    assert isinstance(failure, TimedOut)
    assert request_not_sent(failure)
    assert not request_maybe_taken(failure)
    assert len(tg.sent) == 1


async def test_a_refused_connection_is_a_network_error_that_sent_nothing() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nobody listens there
    request = AiohttpRequest(connect_timeout=2)
    bot = Bot("123:abc", base_url=f"http://127.0.0.1:{port}/bot", request=request)
    try:
        with pytest.raises(NetworkError) as caught:
            await bot.get_me()
    finally:
        await request.shutdown()
    assert not isinstance(caught.value, TimedOut)
    assert not request_maybe_taken(caught.value)


async def test_files_go_as_multipart(tg: FakeTelegramServer) -> None:
    async with _bot(tg, AiohttpRequest()) as bot:
        await bot.send_document(5, b"plain text\n", filename="notes.txt", caption="the notes")
    [sent] = tg.sent_files
    assert (sent.data, sent.file_name, sent.caption) == (b"plain text\n", "notes.txt", "the notes")


async def test_it_opens_again_after_a_shutdown(tg: FakeTelegramServer) -> None:
    request = AiohttpRequest()
    bot = _bot(tg, request)
    await bot.send_message(1, "before")
    await request.shutdown()
    await request.shutdown()  # twice does no harm
    await request.initialize()
    await bot.send_message(1, "after")
    await request.shutdown()
    assert [m.visible_text for m in tg.sent] == ["before", "after"]
    assert tg.connections_seen == 2


def test_one_tls_context_trusts_certifis_authorities() -> None:
    context = tls_context()
    assert tls_context() is context  # the Bot API's sessions and the file downloads share it
    bundle = Path(certifi.where()).read_text(encoding="utf-8")
    assert len(context.get_ca_certs()) == bundle.count("BEGIN CERTIFICATE") > 100
