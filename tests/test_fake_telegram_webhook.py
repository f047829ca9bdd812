"""The fake Bot API's webhook: Telegram's setWebhook rules and its delivery, through python-telegram-bot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot, Update
from telegram.error import BadRequest, Conflict

from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SECRET = "s3cret_TOKEN-1"


@dataclass
class Receiver:
    """A webhook endpoint in the test's loop; `answer` picks the response per request."""

    url: str = ""
    received: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], web.Response] = lambda _body: web.Response(status=200)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def update_ids(self) -> list[int]:
        return [body["update_id"] for body, _ in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        hook.received.append((body, request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        hook.arrived.set()
        return hook.answer(body)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield hook
    await runner.cleanup()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"secret_token": "has space"}, "Secret token contains unallowed characters"),
        ({"secret_token": "a:b"}, "Secret token contains unallowed characters"),
        ({"secret_token": "x" * 257}, "Secret token is too long"),
        ({"url": "ftp://example.com/hook"}, "Invalid webhook url specified"),
    ],
)
async def test_set_webhook_refuses_what_telegram_refuses(
    tg: FakeTelegramServer, bot: Bot, kwargs: dict[str, Any], error: str
) -> None:
    with pytest.raises(BadRequest, match=error):
        await bot.set_webhook(**({"url": "https://example.com/hook"} | kwargs))
    assert tg.webhook_url == ""


async def test_api_telegram_org_wants_https_on_its_ports(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.require_https = True
    with pytest.raises(BadRequest, match="Bad webhook: an https url must be provided"):
        await bot.set_webhook("http://example.com/hook")
    with pytest.raises(BadRequest, match="webhook can be set up only on ports 80, 88, 443 or 8443"):
        await bot.set_webhook("https://example.com:9000/hook")
    assert await bot.set_webhook("https://example.com:8443/hook", secret_token="x" * 256)


async def test_webhook_info_and_the_getupdates_conflict(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    assert await bot.set_webhook(receiver.url, secret_token=SECRET, allowed_updates=["message"], max_connections=500)
    info = await bot.get_webhook_info()
    assert (info.url, info.max_connections, info.allowed_updates) == (receiver.url, 100, ("message",))
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates() == ()


async def test_a_long_poll_is_ended_by_set_webhook(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await tg.await_calls("getUpdates")
    await bot.set_webhook(receiver.url)
    with pytest.raises(Conflict, match="terminated by setWebhook request"):
        await asyncio.wait_for(poll, 5)


async def test_updates_are_posted_with_the_secret_header(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    early = tg.add_text_message(42, "sent before the webhook")
    await bot.set_webhook(receiver.url, secret_token=SECRET)
    late = tg.add_text_message(42, "sent after")
    await tg.await_webhook_delivered(early, late)
    assert receiver.update_ids() == [early, late]
    assert {secret for _, secret in receiver.received} == {SECRET}
    update = Update.de_json(receiver.received[1][0], bot)
    assert update.message is not None
    assert update.message.text == "sent after"
    assert tg.pending_updates == []
    assert (await bot.get_webhook_info()).pending_update_count == 0


async def test_failed_deliveries_are_retried_with_backoff(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    answers = iter([500, 502, 200])
    receiver.answer = lambda _body: web.Response(status=next(answers))
    await bot.set_webhook(receiver.url)
    update_id = tg.add_text_message(42, "retry me")
    await tg.await_webhook_delivered(update_id)
    attempts = tg.webhook_attempts
    assert [(a.attempt, a.status) for a in attempts] == [(1, 500), (2, 502), (3, 200)]
    # Telegram retries the first failure at once, then after 2 units (here 0.05 s each).
    assert attempts[2].time - attempts[1].time >= 2 * tg.webhook_retry_unit * 0.9
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 502 Bad Gateway"
    assert info.last_error_date is not None


async def test_one_chat_waits_for_its_failing_update_while_others_go_on(
    tg: FakeTelegramServer, bot: Bot, receiver: Receiver
) -> None:
    failures = {"left": 3}

    def answer(body: dict[str, Any]) -> web.Response:
        if body["message"]["text"] == "first" and failures["left"]:
            failures["left"] -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    receiver.answer = answer
    first = tg.add_text_message(42, "first")
    second = tg.add_text_message(42, "second")
    other = tg.add_text_message(77, "other chat")
    await bot.set_webhook(receiver.url)
    await tg.await_webhook_delivered(first, second, other)
    delivered = tg.webhook_delivered
    assert delivered.index(first) < delivered.index(second)
    assert delivered.index(other) < delivered.index(first)
    assert receiver.update_ids().count(second) == 1


async def test_an_undeliverable_update_is_dropped(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    tg.webhook_max_attempts = 3
    receiver.answer = lambda _body: web.Response(status=401)
    await bot.set_webhook(receiver.url, secret_token=SECRET)
    update_id = tg.add_text_message(42, "nobody wants me")
    await tg.await_webhook_attempts(3)
    assert tg.webhook_dropped == [update_id]
    assert tg.pending_updates == []


async def test_a_refused_connection_is_an_error_too(tg: FakeTelegramServer, bot: Bot, unused_tcp_port: int) -> None:
    tg.webhook_max_attempts = 2
    await bot.set_webhook(f"http://127.0.0.1:{unused_tcp_port}/hook")
    tg.add_text_message(42, "into the void")
    attempts = await tg.await_webhook_attempts(2)
    assert {(a.status, a.error) for a in attempts} == {(0, "Connection refused")}


async def test_a_webhook_answer_may_carry_a_method(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    def answer(body: dict[str, Any]) -> web.Response:
        reply = {"method": "sendMessage", "chat_id": body["message"]["chat"]["id"], "text": "answered inline"}
        return web.Response(text=json.dumps(reply), content_type="application/json")

    receiver.answer = answer
    await bot.set_webhook(receiver.url)
    tg.add_text_message(42, "hi")
    [sent] = await tg.await_sent(42)
    assert sent.text == "answered inline"


async def test_allowed_updates_filter_what_is_posted(tg: FakeTelegramServer, bot: Bot, receiver: Receiver) -> None:
    await bot.set_webhook(receiver.url, allowed_updates=["message"])
    tg.add_callback_query(42, "button")
    message = tg.add_text_message(42, "kept")
    await tg.await_webhook_delivered(message)
    assert receiver.update_ids() == [message]
