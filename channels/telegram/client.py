"""A python-telegram-bot `Bot` with connection pools of its own, and the one way to close them."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import structlog
from telegram import Bot

from channels.telegram.aiohttp_request import AiohttpRequest
from conf.settings import TelegramSettings

__all__ = ["TelegramClient", "file_base_url"]

log = structlog.get_logger(__name__)


def file_base_url(api_base_url: str) -> str:
    """python-telegram-bot's `base_file_url` for an API base URL: `https://api.telegram.org/bot` gives
    `https://api.telegram.org/file/bot` (a local Bot API server serves files the same way)."""
    base = api_base_url.rstrip("/")
    return f"{base.removesuffix('/bot')}/file/bot"


class TelegramClient:
    """A `Bot` whose two connection pools (API calls, and `getUpdates`) belong to this object.

    Both go through aiohttp (`AiohttpRequest`): a third of httpx's CPU per request
    (bench/http_clients.py), with the same timeouts, pool limits and errors.

    It is closed through those pools, not `Bot.shutdown()`: that does nothing for a bot that was
    never initialised (the polling bot, or one whose `getMe` failed) and would leak its sockets.
    Use it as `async with` or call `aclose()`; closing twice does no harm.
    """

    def __init__(self, settings: TelegramSettings, *, pool_size: int, read_timeout: float) -> None:
        tls = not settings.api_base_url.startswith("http://")
        self._requests = (
            AiohttpRequest(connection_pool_size=pool_size, read_timeout=read_timeout, connect_timeout=10.0, tls=tls),
            AiohttpRequest(connection_pool_size=1, read_timeout=10.0, connect_timeout=10.0, tls=tls),
        )
        self.bot = Bot(
            settings.token,
            base_url=settings.api_base_url,
            base_file_url=file_base_url(settings.api_base_url),
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )
        self.closed = False

    async def aclose(self) -> None:
        """Close both connection pools."""
        self.closed = True
        for request in self._requests:
            try:
                await request.shutdown()
            except Exception as exc:  # closing a broken connection must not mask why we stopped
                log.debug("telegram_client_close_failed", error=repr(exc))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
