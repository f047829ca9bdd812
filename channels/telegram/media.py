"""Files through the Bot API: downloading what users send (getFile, then the file URL), and sending voice.

A download checks the size Telegram declared against the limit before anything is fetched (a bot may
download at most 20 MB; each kind of file has a lower limit of ours), streams the bytes and stops at
the limit whatever was declared, gives up after `timeout_seconds`, and retries network trouble, flood
control and server errors under the one backoff policy (a link that expired is asked for again). It
never blocks the event loop, and downloads of different chats run side by side.

The file URL holds the bot token (`.../file/bot<token>/<path>`): it is never logged by us (lines name
the file_id), and the log redactor removes the token from any library's line that shows it.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from telegram import Bot
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from tenacity import retry_if_exception

from actors.media import Downloaded, FileTooBig, FileUnavailable
from actors.protocol import DeliveryFailed, ReplyTarget
from channels.telegram.aiohttp_request import proxy_for_host, tls_context
from channels.telegram.sender import DeliveryError, TelegramSender, retry_after_seconds
from ops.backoff import Backoff

__all__ = ["TELEGRAM_DOWNLOAD_LIMIT", "TelegramFiles", "TelegramVoiceSender"]

log = structlog.get_logger(__name__)

TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The largest file the Bot API lets a bot download (getFile answers "file is too big" beyond it)."""


class _Retry(Exception):
    """A download attempt failed in a way the next attempt may not (network, 5xx, 429, an expired link)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TelegramFiles:
    """The FileSource of `actors.media` on the Bot API. `bot` answers getFile (it must have been built
    with `base_file_url`, see `channels.telegram.client`); the bytes come over an aiohttp session of
    this object's own, with at most `connections` connections (so downloads never wait behind
    replies), made on the first download (a bot that is never sent a file never makes one) and
    closed by `aclose`. It trusts the CA bundle the Bot API client trusts (one TLS context for both).
    """

    def __init__(
        self,
        bot: Bot,
        backoff: Backoff,
        *,
        timeout_seconds: float = 60.0,
        connections: int = 8,
    ) -> None:
        self._bot = bot
        self._backoff = backoff
        self._timeout = timeout_seconds
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session, made on first use inside the running loop (aiohttp wants that)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # Idle connections close after 5 s, as httpx's did.
                connector=aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=5.0, ssl=tls_context()),
                # Not trust_env (it reads ~/.netrc in a thread per request); proxies: `proxy_for_host`.
                trust_env=False,
                # 10 s to connect, 30 s at most between two reads; the whole download has `timeout_seconds`.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=30.0),
            )
        return self._session

    async def download(self, file_id: str, *, declared_size: int | None, max_bytes: int) -> Downloaded:
        """The file's bytes (see the module docstring). Raises FileTooBig or FileUnavailable."""
        limit = min(max_bytes, TELEGRAM_DOWNLOAD_LIMIT)
        if declared_size is not None and declared_size > limit:
            raise FileTooBig(limit)
        try:
            async with asyncio.timeout(self._timeout):
                return await self._download_retrying(file_id, limit)
        except TimeoutError:
            log.warning("telegram_download_failed", file_id=file_id, reason="timeout")
            raise FileUnavailable(f"no download within {self._timeout:g} s") from None
        except _Retry as exc:
            log.warning("telegram_download_failed", file_id=file_id, reason=exc.reason)
            raise FileUnavailable(exc.reason) from None

    async def _download_retrying(self, file_id: str, limit: int) -> Downloaded:
        def log_retry(state: Any) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            reason = error.reason if isinstance(error, _Retry) else type(error).__name__
            wait_s = round(state.upcoming_sleep, 3)
            log.info(
                "telegram_download_retry", file_id=file_id, attempt=state.attempt_number, wait_s=wait_s, reason=reason
            )

        async for attempt in self._backoff.retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retry)),
            budget_seconds=self._timeout,
            before_sleep=log_retry,
            retry_after=lambda exc: exc.retry_after if isinstance(exc, _Retry) else None,
        ):
            with attempt:
                url, path = await self._file_url(file_id, limit)
                data = await self._fetch(url, limit)
                log.debug("telegram_downloaded", file_id=file_id, path=path, size=len(data))
                return Downloaded(data, path)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _file_url(self, file_id: str, limit: int) -> tuple[str, str]:
        """getFile: the download URL and the file's path (its name on the server)."""
        try:
            file = await self._bot.get_file(file_id)
        except RetryAfter as exc:
            raise _Retry("getFile flood control", retry_after_seconds(exc)) from exc
        except BadRequest as exc:
            # Telegram has no error code for this: its description is the only signal.
            if "file is too big" in exc.message.lower():
                raise FileTooBig(TELEGRAM_DOWNLOAD_LIMIT) from exc
            raise FileUnavailable(f"getFile refused: {exc.message}") from exc
        except NetworkError as exc:  # TimedOut included
            raise _Retry(f"getFile failed: {type(exc).__name__}") from exc
        except TelegramError as exc:
            raise FileUnavailable(f"getFile refused: {exc.message}") from exc
        if file.file_size is not None and file.file_size > limit:
            raise FileTooBig(limit)
        if not file.file_path:
            raise FileUnavailable("getFile gave no file path")
        return file.file_path, file.file_path.rsplit("/", 1)[-1]

    async def _fetch(self, url: str, limit: int) -> bytes:
        """The bytes at `url`, streamed; FileTooBig as soon as they pass `limit`."""
        parts = urlsplit(url)
        proxy = proxy_for_host(parts.scheme, parts.hostname or "")
        try:
            async with self._open().get(url, allow_redirects=False, proxy=proxy) as response:
                if response.status != 200:
                    # 404: the link expired (an hour after getFile); 429/5xx: Telegram is busy.
                    if response.status in (404, 429) or response.status >= 500:
                        raise _Retry(f"download answered HTTP {response.status}")
                    raise FileUnavailable(f"download answered HTTP {response.status}")
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise FileTooBig(limit)
                chunks: list[bytes] = []
                received = 0
                async for chunk in response.content.iter_any():
                    received += len(chunk)
                    if received > limit:
                        raise FileTooBig(limit)
                    chunks.append(chunk)
                return b"".join(chunks)
        except aiohttp.ClientError as exc:  # its timeouts too, connection errors, a body cut short
            raise _Retry(f"download failed: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Close the download connections, if a download made them."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class TelegramVoiceSender:
    """The VoiceSender of `actors.voice`: sendVoice through the flood-controlled sender."""

    def __init__(self, sender: TelegramSender) -> None:
        self._sender = sender

    async def send_voice(self, target: ReplyTarget, ogg: bytes) -> None:
        """Send one voice message to the target's chat (and topic)."""
        try:
            await self._sender.send_voice(
                target.chat_id,
                ogg,
                message_thread_id=target.message_thread_id,
                reply_to_message_id=target.reply_to_message_id,
            )
        except DeliveryError as exc:
            raise DeliveryFailed(str(target.chat_id), exc.reason) from exc
