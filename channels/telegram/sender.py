"""Outbound Telegram delivery: formatting, splitting, flood control and retries, per chat.

Limits follow python-telegram-bot's `AIORateLimiter` defaults: at most 30 messages/s overall and
20 messages/min in each group. Unlike `AIORateLimiter`, a `RetryAfter` pauses only the chat that
drew it: one chat's flood wait never stalls the others. Private chats are not paced proactively:
Telegram's ~1 message/s per chat is guidance it enforces with 429 + `retry_after`, which we honour
for that chat; pacing every private chat at 1/s would add up to a second to each quick exchange.

Retries are at-least-once. A failure before the request was whole on the wire (connecting,
writing, our own pool) certainly left the message untaken and is retried; so is one after it
(a read timeout, a dropped connection), where Telegram may have taken it: the Bot API has no
idempotency key and no way to ask, so the message is sent again and may arrive twice
(`telegram_send_uncertain` in the log). A duplicate is the lesser harm than a lost answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import structlog
from telegram import Bot
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from channels.telegram._api import SEND_MESSAGE, send_message_parameters
from channels.telegram._rate import Rate, RateWindow
from channels.telegram._refusals import DeliveryError, MessageGone, edit_impossible, retry_after_seconds
from channels.telegram.aiohttp_request import request_maybe_taken, request_not_sent
from channels.telegram.format import MAX_MESSAGE_LENGTH, html_to_plain, split_message, to_telegram_html
from ops.aio import KeyedLocks, wait_event
from ops.backoff import Backoff, Clock, Sleep

__all__ = ["DeliveryError", "Rate", "TelegramSender", "edit_impossible", "retry_after_seconds"]

log = structlog.get_logger(__name__)


# Failures after the whole request was written (read timeout, connection lost while the answer was
# awaited) may have left the message with Telegram: `request_maybe_taken`. Every other network
# failure (connecting, the pool, an HTTP error status) certainly left it untaken.


TELEGRAM_OVERALL_RATE = Rate(30, 1.0)
TELEGRAM_GROUP_RATE = Rate(20, 60.0)


class TelegramSender:
    """Sends replies to chats: Markdown -> HTML chunks, in order, with per-chat flood control.

    `max_concurrent_sends` should equal the connection pool size of the Bot's request (AiohttpRequest).
    `backoff` paces retries after network errors and honours Telegram's `retry_after`; its delays
    are waited out through `sleep`. `on_retry(wait_s, reason)` hears of every retry (for metrics).
    `overall_rate` paces all chats together (None: no proactive overall pacing, only Telegram's
    429s, per chat); `group_rate` paces each group; `clock` and `sleep` are injectable for tests.
    `typing_bot` (with its own pool of `typing_connections`) sends "typing...", so that chat actions
    never hold a connection a reply is waiting for; without it they share the sending pool.

    `send_text` returns once every chunk was accepted; it waits out `RetryAfter` (for that chat
    only) and retries network errors with capped backoff, forever, so nothing is dropped for a
    transient reason. Cancel it to give up. It raises `DeliveryError` only for permanent failures.
    """

    def __init__(
        self,
        bot: Bot,
        backoff: Backoff,
        *,
        overall_rate: Rate | None = TELEGRAM_OVERALL_RATE,
        group_rate: Rate = TELEGRAM_GROUP_RATE,
        max_concurrent_sends: int = 32,
        typing_interval_s: float = 4.0,
        typing_delay_s: float = 0.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_retry: Callable[[float, str], None] | None = None,
        typing_bot: Bot | None = None,
        typing_connections: int = 2,
    ) -> None:
        self._bot = bot
        self._typing_bot = typing_bot if typing_bot is not None else bot
        self._on_retry = on_retry
        self._backoff = backoff
        self._group_rate = group_rate
        self._typing_interval_s = typing_interval_s
        self._typing_delay_s = typing_delay_s
        self._clock = clock
        self._sleep = sleep
        self._overall = RateWindow(overall_rate, clock, sleep) if overall_rate is not None else None
        # Requests beyond the HTTP pool's size would fail with a pool timeout after waiting for a
        # connection; queueing them here instead keeps hundreds of chats from retrying in lockstep.
        self._in_flight = asyncio.Semaphore(max_concurrent_sends)
        self._typing_in_flight = asyncio.Semaphore(typing_connections) if typing_bot is not None else self._in_flight
        self._typing: set[asyncio.Task[None]] = set()
        self._groups: dict[int, RateWindow] = {}
        # One lock per chat, so chunks of two replies to a chat never interleave.
        self._chats: KeyedLocks[int] = KeyedLocks()

    # -- messages ----------------------------------------------------------------------------------

    async def send_text(
        self,
        chat_id: int,
        markdown: str,
        *,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> list[int]:
        """Send the model's Markdown as one or more messages, in order; return their message ids.

        Only the first chunk replies to `reply_to_message_id`. Raises DeliveryError if Telegram
        refuses the chat for good; earlier chunks may have been delivered by then.
        """
        chunks = split_message(to_telegram_html(markdown))
        if not chunks:
            log.warning("telegram_empty_reply", chat_id=chat_id)
            return []
        return await self.send_chunks(
            chat_id, chunks, message_thread_id=message_thread_id, reply_to_message_id=reply_to_message_id
        )

    async def send_chunks(
        self,
        chat_id: int,
        chunks: Sequence[str],
        *,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> list[int]:
        """Send chunks of Telegram HTML (from `split_message`) as messages, in order, as `send_text` does."""
        async with self._chats.hold(chat_id):
            ids: list[int] = []
            for index, chunk in enumerate(chunks):
                reply_to = reply_to_message_id if index == 0 else None
                ids.extend(await self._send_chunk(chat_id, chunk, message_thread_id, reply_to))
            return ids

    async def send_voice(
        self,
        chat_id: int,
        ogg: bytes,
        *,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """Send a voice message (Ogg Opus bytes) after any text queued for the chat, with the same flood
        control and retries; its message id. Raises DeliveryError if Telegram refuses the chat for good."""

        async def send(_text: str, _parse_mode: str | None) -> list[int]:
            if chat_id < 0:
                await self._group_window(chat_id).acquire()
            if self._overall is not None:
                await self._overall.acquire()
            async with self._in_flight:
                message = await self._bot.send_voice(
                    chat_id,
                    ogg,
                    message_thread_id=message_thread_id,
                    reply_to_message_id=reply_to_message_id,
                    allow_sending_without_reply=True if reply_to_message_id is not None else None,
                )
            return [message.message_id]

        async with self._chats.hold(chat_id):
            message_ids = await self._deliver(chat_id, "", send)
        return message_ids[0]

    async def _send_chunk(self, chat_id: int, html: str, thread_id: int | None, reply_to: int | None) -> list[int]:
        async def send(text: str, parse_mode: str | None) -> list[int]:
            if chat_id < 0:  # groups and supergroups have negative ids
                await self._group_window(chat_id).acquire()
            if self._overall is not None:
                await self._overall.acquire()
            parameters = send_message_parameters(chat_id, text, parse_mode, thread_id, reply_to)
            async with self._in_flight:
                # The sent message as JSON, not as a `Message`: building one (and PTB's handling of
                # send_message's two dozen parameters) was half the CPU of a send.
                sent = await self._bot.do_api_request(SEND_MESSAGE, api_kwargs=parameters)
            return [int(sent["message_id"])]

        return await self._deliver(chat_id, html, send)

    async def _deliver(
        self, chat_id: int, html: str, call: Callable[[str, str | None], Awaitable[list[int]]]
    ) -> list[int]:
        """Run `call` with the HTML chunk until it succeeds or fails for good."""
        text: str = html
        parse_mode: str | None = ParseMode.HTML
        attempt = 0
        while True:
            try:
                return await call(text, parse_mode)
            except RetryAfter as exc:
                wait_s = self._backoff.delay(attempt, retry_after=retry_after_seconds(exc))
                log.warning("telegram_retry_after", chat_id=chat_id, wait_s=wait_s)
                self._report_retry(wait_s, "retry_after")
                await self._sleep(wait_s)
            except ChatMigrated as exc:
                log.warning("telegram_chat_migrated", chat_id=chat_id, new_chat_id=exc.new_chat_id)
                raise DeliveryError(chat_id, f"chat migrated to {exc.new_chat_id}") from exc
            except BadRequest as exc:
                reason = exc.message.lower()
                # Telegram has no error code for these: its description is the only signal.
                if "can't parse entities" in reason and parse_mode is not None:
                    log.warning("telegram_html_rejected", chat_id=chat_id, reason=exc.message)
                    text, parse_mode = html_to_plain(html), None
                    continue
                if "message is too long" in reason:
                    return await self._deliver_halves(chat_id, text, parse_mode, call)
                log.error("telegram_send_failed", chat_id=chat_id, reason=exc.message)
                raise DeliveryError(chat_id, exc.message) from exc
            except (Forbidden, InvalidToken) as exc:
                log.error("telegram_send_failed", chat_id=chat_id, reason=exc.message)
                raise DeliveryError(chat_id, exc.message) from exc
            except NetworkError as exc:  # TimedOut included
                if request_not_sent(exc):
                    # Not sent at all: our own pool was busy. Try again at once; backing off would
                    # only make the waiting chats retry together later.
                    log.debug("telegram_pool_busy", chat_id=chat_id)
                    continue
                attempt += 1
                wait_s = self._backoff.delay(attempt)
                # Sent, but no answer came back (read timeout, connection lost): Telegram may have
                # taken it, and the Bot API cannot tell. Sending again risks a duplicate; not sending
                # risks losing the answer to an acknowledged message, which is worse.
                uncertain = request_maybe_taken(exc)
                log.warning(
                    "telegram_send_uncertain" if uncertain else "telegram_send_retry",
                    chat_id=chat_id,
                    attempt=attempt,
                    wait_s=round(wait_s, 3),
                    error=exc.message,
                )
                self._report_retry(wait_s, "uncertain" if uncertain else "network")
                await self._sleep(wait_s)
            except TelegramError as exc:
                log.error("telegram_send_failed", chat_id=chat_id, reason=exc.message)
                raise DeliveryError(chat_id, exc.message) from exc

    async def _deliver_halves(
        self,
        chat_id: int,
        text: str,
        parse_mode: str | None,
        call: Callable[[str, str | None], Awaitable[list[int]]],
    ) -> list[int]:
        # Telegram measured the text longer than we did (it counts some characters as two):
        # send it as smaller parts rather than fail.
        log.warning("telegram_message_too_long", chat_id=chat_id, length=len(text))
        if parse_mode is None:
            parts = [text[i : i + MAX_MESSAGE_LENGTH // 2] for i in range(0, len(text), MAX_MESSAGE_LENGTH // 2)]
        else:
            parts = split_message(text, max(16, len(text) // 2))
        if len(parts) < 2:
            raise DeliveryError(chat_id, "message is too long")
        message_ids: list[int] = []
        for part in parts:
            message_ids.extend(await self._deliver(chat_id, part, call))
        return message_ids

    async def edit_text(self, chat_id: int, message_id: int, html: str) -> bool:
        """Replace the text of one of the bot's messages (a preview, with the answer), retried and paced
        like a send; HTML Telegram refuses goes plain. An unchanged text counts as done. False if the
        message can no longer take it (deleted, too old, too long as Telegram counts): send it anew.
        Raises DeliveryError like `send_text`."""

        async def edit(text: str, parse_mode: str | None) -> list[int]:
            if chat_id < 0:
                await self._group_window(chat_id).acquire()
            try:
                async with self._in_flight:
                    await self._bot.edit_message_text(text, chat_id, message_id, parse_mode=parse_mode)
            except BadRequest as exc:
                if "message is not modified" in exc.message.lower():
                    return []
                if edit_impossible(exc):
                    raise MessageGone from exc
                raise
            return []

        try:
            async with self._chats.hold(chat_id):
                await self._deliver(chat_id, html, edit)
        except MessageGone:
            log.info("telegram_edit_impossible", chat_id=chat_id, message_id=message_id)
            return False
        return True

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        """Delete one of the bot's messages (a preview the answer no longer needs). Best effort:
        failures are logged, never raised."""
        try:
            async with self._in_flight:
                await self._bot.delete_message(chat_id, message_id)
        except TelegramError as exc:
            log.info("telegram_delete_failed", chat_id=chat_id, message_id=message_id, error=exc.message)

    def preview_room(self, chat_id: int, *, reserve: int = 3) -> bool:
        """Count one preview request (a draft, or a preview message or its edit) in the chat's rate
        window (and the overall one) if it fits now with `reserve` places left for answers; False,
        counting nothing, if not. Previews go on connections of their own (TelegramStreams), so this
        is all they take from answers."""
        if chat_id < 0 and not self._group_window(chat_id).try_acquire(reserve):
            return False
        return self._overall is None or self._overall.try_acquire(reserve)

    def _report_retry(self, wait_s: float, reason: str) -> None:
        if self._on_retry is not None:
            self._on_retry(wait_s, reason)

    def _group_window(self, chat_id: int) -> RateWindow:
        window = self._groups.get(chat_id)
        if window is None:
            if len(self._groups) >= 1024:
                # Forget groups whose window is empty, so thousands of groups do not pile up.
                self._groups = {key: value for key, value in self._groups.items() if not value.idle()}
            window = self._groups[chat_id] = RateWindow(self._group_rate, self._clock, self._sleep)
        return window

    # -- typing ------------------------------------------------------------------------------------

    async def send_typing(
        self, chat_id: int, message_thread_id: int | None = None, *, unless: asyncio.Event | None = None
    ) -> None:
        """Show "typing..." in the chat. Best effort: failures are logged at debug, never raised.
        With `unless`, nothing is sent if that event is set by the time a connection is free."""
        try:
            async with self._typing_in_flight:
                if unless is not None and unless.is_set():
                    return
                await self._typing_bot.send_chat_action(chat_id, ChatAction.TYPING, message_thread_id=message_thread_id)
        except TelegramError as exc:
            log.debug("telegram_typing_failed", chat_id=chat_id, error=exc.message)

    @asynccontextmanager
    async def typing_while(self, chat_id: int, message_thread_id: int | None = None) -> AsyncIterator[None]:
        """Keep "typing..." shown while the block runs: after `typing_delay_s`, then every `typing_interval_s`.

        On exit the keeper is told to stop, not cancelled (cancelling an HTTP request in flight can leak
        a pooled connection); it ends after its current request, tracked until then (`aclose`)."""
        stop = asyncio.Event()
        timer: asyncio.TimerHandle | None = None
        if self._typing_delay_s > 0 and self._sleep is asyncio.sleep:
            # Most turns end within the delay: a timer until "typing..." is due, not a task per turn.
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self._typing_delay_s, self._start_typing, chat_id, message_thread_id, stop, False)
        else:
            self._start_typing(chat_id, message_thread_id, stop, True)
        try:
            yield
        finally:
            stop.set()
            if timer is not None:
                timer.cancel()

    def _start_typing(self, chat_id: int, message_thread_id: int | None, stop: asyncio.Event, delay: bool) -> None:
        if stop.is_set():
            return
        task = asyncio.create_task(
            self._keep_typing(chat_id, message_thread_id, stop, delay=delay), name=f"telegram-typing-{chat_id}"
        )
        self._typing.add(task)
        task.add_done_callback(self._typing_done)

    def _typing_done(self, task: asyncio.Task[None]) -> None:
        self._typing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("telegram_typing_stopped", error=repr(task.exception()))

    async def _keep_typing(
        self, chat_id: int, message_thread_id: int | None, stop: asyncio.Event, *, delay: bool
    ) -> None:
        # A turn answered within `typing_delay_s` needs no "typing...": the answer is the sign of
        # life, and the chat action would cost a request as dear as the answer itself.
        if delay and self._typing_delay_s > 0 and await wait_event(stop, self._typing_delay_s, sleep=self._sleep):
            return
        while not stop.is_set():
            await self.send_typing(chat_id, message_thread_id, unless=stop)
            # Waiting is safe to cancel; an HTTP request is not, which is why stopping is an event.
            if await wait_event(stop, self._typing_interval_s, sleep=self._sleep):
                return

    async def aclose(self) -> None:
        """Let typing keepers finish their last request (a few seconds at most), then cancel them."""
        if self._typing:
            _, pending = await asyncio.wait(list(self._typing), timeout=5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
