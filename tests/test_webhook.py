"""The webhook gateway in this process, with the fake Bot API delivering updates as Telegram does."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from telegram import Bot

from channels.telegram.webhook import SECRET_HEADER, WebhookGateway
from conf import ConfigError, Settings, load_settings
from tests.e2e_support import SHIPPED, assistant_env, fast_settings, running
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer
from tests.scale_support import text_update

SECRET = "hook_Secret-42"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def webhook_settings(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, **webhook: Any) -> Settings:
    port = free_port()
    env = assistant_env(
        tg,
        llm,
        tmp_path / "store",
        TELEGRAM_WEBHOOK_URL=f"http://127.0.0.1:{port}/tg/hook",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        WEBHOOK_PORT=str(port),
    )
    settings = fast_settings(env)
    return settings.model_copy(update={"webhook": settings.webhook.model_copy(update={"host": "127.0.0.1", **webhook})})


async def post(settings: Settings, body: bytes, secret: str | None = SECRET) -> int:
    headers = {"Content-Type": "application/json"} | ({SECRET_HEADER: secret} if secret is not None else {})
    async with aiohttp.ClientSession() as session, session.post(settings.webhook.url, data=body, headers=headers) as r:
        return r.status


async def test_updates_arrive_by_webhook_and_are_answered(
    tg: FakeTelegramServer, llm: FakeLLMServer, bot: Bot, tmp_path: Path
) -> None:
    settings = webhook_settings(tg, llm, tmp_path)
    async with running(settings) as system:
        gateway = system.gateway
        assert isinstance(gateway, WebhookGateway)
        await tg.await_calls("setWebhook", timeout=10)
        assert tg.webhook_url == settings.webhook.url
        info = await bot.get_webhook_info()
        assert tuple(info.allowed_updates or ()) == ("message",)
        update_id = tg.add_text_message(42, "by webhook")
        [answer] = await tg.await_sent(chat_id=42, timeout=10)
        assert answer.text == "echo: by webhook"
        await tg.await_webhook_delivered(update_id)
        assert [attempt.secret_header for attempt in tg.webhook_attempts] == [SECRET]
        assert "getUpdates" not in tg.calls
        assert system.health is None or gateway.health()[0]
        ok, body = gateway.health()
        assert ok
        assert body["mode"] == "webhook"


async def test_a_wrong_or_missing_secret_is_401_and_nothing_is_handled(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    settings = webhook_settings(tg, llm, tmp_path, max_body_bytes=4096)
    async with running(settings) as system:
        await tg.await_calls("setWebhook", timeout=10)
        update = json.dumps(text_update(900, 42, "forged")).encode()
        assert await post(settings, update, secret="wrong") == 401
        assert await post(settings, update, secret=None) == 401
        # Not read: a body far past the limit still gets 401, not 413.
        assert await post(settings, b"x" * (2 * settings.webhook.max_body_bytes), secret="nope") == 401
        assert await post(settings, b"x" * (2 * settings.webhook.max_body_bytes)) == 413
        assert await post(settings, b"not json") == 400
        assert llm.requests == []
        assert system.registry is not None
        assert len(system.registry) == 0


async def test_a_retried_update_is_answered_200_and_handled_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    settings = webhook_settings(tg, llm, tmp_path)
    async with running(settings):
        await tg.await_calls("setWebhook", timeout=10)
        update = json.dumps(text_update(901, 43, "once please")).encode()
        assert await post(settings, update) == 200
        assert await post(settings, update) == 200  # Telegram's retry after a lost answer
        [answer] = await tg.await_sent(chat_id=43, timeout=10)
        assert answer.text == "echo: once please"
    from stores import FileConversationStore

    async with FileConversationStore(Path(settings.store.dir)) as store:
        records = await store.load("43")
    assert [record["update_id"] for record in records if record.get("role") == "user"] == [901]
    assert len(llm.requests) == 1


async def test_polling_again_deletes_the_webhook(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> None:
    settings = webhook_settings(tg, llm, tmp_path)
    async with running(settings):
        await tg.await_calls("setWebhook", timeout=10)
    assert tg.webhook_url == settings.webhook.url  # kept across a restart of webhook mode
    polling = settings.model_copy(update={"webhook": settings.webhook.model_copy(update={"url": ""})})
    async with running(polling):
        await tg.await_calls("deleteWebhook", timeout=10)
        assert tg.webhook_url == ""
        tg.add_text_message(44, "polled again")
        [answer] = await tg.await_sent(chat_id=44, timeout=10)
        assert answer.text == "echo: polled again"


def test_a_webhook_needs_its_secret_and_a_queue_needs_dynamodb(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(SHIPPED, env={"TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook"})
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(SHIPPED, env={"TELEGRAM_WEBHOOK_URL": "https://b.example/h", "TELEGRAM_WEBHOOK_SECRET": "a b"})
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/assistant.fifo"
    with pytest.raises(ConfigError, match="INGRESS_QUEUE_URL"):
        load_settings(SHIPPED, env={"INGRESS_QUEUE_URL": queue})
    with pytest.raises(ConfigError, match="FIFO"):
        load_settings(SHIPPED, env={"INGRESS_QUEUE_URL": queue.removesuffix(".fifo"), "STORE_BACKEND": "dynamodb"})
    settings = load_settings(SHIPPED, env={"INGRESS_QUEUE_URL": queue, "STORE_BACKEND": "dynamodb"})
    assert settings.queue.enabled
    assert not settings.webhook.enabled
