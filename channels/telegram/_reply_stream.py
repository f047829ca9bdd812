"""The preview of one answer and its delivery: the task that sends drafts or edits at their pace,
and the finish that replaces them with the answer. See streaming.py, which makes these."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import structlog
from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError

from actors.protocol import DeliveryFailed, PreviewMessages, Reply, ReplyTarget
from channels.telegram._preview_text import PreviewText
from channels.telegram.format import split_message, to_telegram_html
from channels.telegram.sender import DeliveryError, edit_impossible, retry_after_seconds
from ops.aio import wait_event

if TYPE_CHECKING:
    from channels.telegram.streaming import TelegramStreams

__all__ = ["Mode", "TelegramReplyStream"]

log = structlog.get_logger(__name__)

Mode = Literal["draft", "edit", "off"]
"""How an answer is previewed: drafts, a message edited as it grows, or not at all."""


class TelegramReplyStream:
    """The preview of one answer, and its delivery (see the module docstring). Made by TelegramStreams."""

    def __init__(
        self,
        streams: TelegramStreams,
        target: ReplyTarget,
        text: Callable[[], str],
        mode: Mode,
        shown: tuple[int, ...],
        on_messages: PreviewMessages | None,
        on_visible: Callable[[], None] | None,
    ) -> None:
        self._streams = streams
        self._sender = streams.sender
        self._timing = streams.timing
        self._clock = streams.clock
        self._sleep = streams.sleep
        self._target = target
        self._text = text
        self.mode: Mode = mode
        self._on_messages = on_messages
        self._on_visible = on_visible
        self.messages: list[int] = list(shown)
        """The preview messages (edit mode), in order."""
        self._shown: list[str | None] = [None] * len(shown)  # their HTML (None: unknown, after a restart)
        self._preview = PreviewText()
        self._draft_id = streams.new_draft_id()
        self._draft: tuple[int, str] | None = None  # the last draft sent: (id, HTML)
        self._version = 0  # counts changes of the text
        self._drawn = -1  # the version last previewed
        self._behind = False  # the preview needs more requests than one to show the text drawn
        self._refresh = False
        self._urgent = False
        self._closing = False
        self._next_at = -math.inf  # no preview request before this (pace, flood control)
        self._wake = asyncio.Event()  # the text changed, or the stream ends
        self._halt = asyncio.Event()  # a pause should end: the stream ends, or a tool call began
        self._task: asyncio.Task[None] | None = None
        self._due: asyncio.TimerHandle | None = None  # the first preview's delay, as a timer (real clock)
        self._in_request = False  # a request (and what it records) is under way: it is never cut
        self._visible = False

    # -- what the conversation actor calls ----------------------------------------------------------

    def changed(self) -> None:
        """The text grew: preview it when the pace allows (starts the preview task on first use)."""
        if self._closing or self.mode == "off":
            return
        self._version += 1
        self._wake.set()
        if self._task is not None:
            return
        delay = self._timing.first_delay_s
        if self._urgent or delay <= 0 or self._sleep is not asyncio.sleep:
            self._start(delayed=self._urgent or delay <= 0)
        elif self._due is None:
            # Most answers are done within the first delay: a timer until a preview is due, not a task.
            self._due = asyncio.get_running_loop().call_later(delay, self._start, True)

    def _start(self, delayed: bool) -> None:
        self._cancel_due()
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._run(delayed), name=f"telegram-preview-{self._target.chat_id}"
            )
            self._streams.track(self._task)

    def tool_boundary(self) -> None:
        """A tool call begins: show the text now, without the first preview's delay."""
        self._urgent = True
        self._halt.set()
        self.changed()

    def answered(self) -> None:
        """The answer is complete and `finish` comes next (once it is recorded): the preview stops
        here. A busy process would otherwise send a draft of the finished answer while recording it."""
        self._cancel_due()
        self._closing = True
        self._wake.set()
        self._halt.set()

    async def finish(self, reply: Reply) -> None:
        """Deliver the answer: sent once (private chats), or as the last edit of the preview
        messages (split as a whole answer; extra preview messages are deleted)."""
        await self.aclose()
        target = self._target
        try:
            if self.messages:
                await self._finish_by_edits(split_message(to_telegram_html(reply.text)))
            else:
                await self._sender.send_text(
                    target.chat_id,
                    reply.text,
                    message_thread_id=target.message_thread_id,
                    reply_to_message_id=target.reply_to_message_id,
                )
        except DeliveryError as exc:
            raise DeliveryFailed(reply.conversation_id, type(exc).__name__) from exc
        self._seen()

    async def aclose(self) -> None:
        """End the preview at once; a request in flight ends first (never cut: httpx could lose the
        connection, and a preview message's id is recorded in it)."""
        self._cancel_due()
        self._closing = True
        self._wake.set()
        self._halt.set()
        task, self._task = self._task, None
        if task is not None:
            if not self._in_request:
                task.cancel()  # waiting for its pace or its turn: nothing is cut
            await asyncio.wait([task])

    # -- the preview task ---------------------------------------------------------------------------

    def _cancel_due(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None

    async def _run(self, delayed: bool) -> None:
        try:
            if not delayed and not self._urgent:
                await wait_event(self._halt, self._timing.first_delay_s, sleep=self._sleep)
            while not self._closing and self.mode != "off":
                self._halt.clear()
                wait = self._next_at - self._clock()
                if wait > 0:
                    await wait_event(self._halt, wait, sleep=self._sleep)
                elif self._version != self._drawn or self._behind or self._refresh:
                    await self._tick()
                elif self.mode == "draft":
                    self._wake.clear()
                    self._refresh = not await wait_event(self._wake, self._timing.draft_refresh_s, sleep=self._sleep)
                else:
                    self._wake.clear()
                    await self._wake.wait()
        except Exception as exc:  # a preview must never take the answer down with it
            log.error("telegram_preview_crashed", chat_id=self._target.chat_id, error=repr(exc))
            self.mode = "off"

    async def _tick(self) -> None:
        """At most one preview request for the text as it is now."""
        version, refresh, self._refresh = self._version, self._refresh, False
        chunks = self._preview.chunks(self._text())
        if not chunks:
            self._drawn = version
            return
        if self.mode == "draft":
            index = len(chunks) - 1
            draft = (self._draft_id + index, chunks[index])
            if draft == self._draft and not refresh:
                self._drawn = version
            elif await self._request(self._draft_call(*draft), self._timing.draft_interval_s):
                self._draft = draft
                self._drawn = version
            return
        if await self._edit_step(chunks):
            self._drawn = version
        self._behind = len(self.messages) < len(chunks) or any(
            shown != chunk for shown, chunk in zip(self._shown, chunks, strict=False)
        )

    async def _edit_step(self, chunks: list[str]) -> bool:
        """One request toward showing `chunks`: finish the last preview message before starting the
        next; True if the preview is (or was already) up to date with this request."""
        count = len(self.messages)
        if count < len(chunks) and (count == 0 or self._shown[count - 1] == chunks[count - 1]):
            sent = await self._request(self._new_message_call(chunks[count]), self._timing.edit_interval_s)
            return sent and len(chunks) == len(self.messages)
        index = min(count, len(chunks)) - 1
        if self._shown[index] == chunks[index]:
            return True
        edited = await self._request(self._edit_call(index, chunks[index]), self._timing.edit_interval_s)
        return edited and len(chunks) <= len(self.messages)

    def _draft_call(self, draft_id: int, html: str) -> Callable[[Bot], Awaitable[None]]:
        async def call(bot: Bot) -> None:
            timeout = self._timing.request_timeout_s
            await bot.send_message_draft(
                self._target.chat_id,
                draft_id,
                html,
                message_thread_id=self._target.message_thread_id,
                parse_mode=None if self._preview.plain else ParseMode.HTML,
                read_timeout=timeout,
                write_timeout=timeout,
                connect_timeout=timeout,
            )

        return call

    def _new_message_call(self, html: str) -> Callable[[Bot], Awaitable[None]]:
        async def call(bot: Bot) -> None:
            timeout, target = self._timing.request_timeout_s, self._target
            reply_to = target.reply_to_message_id if not self.messages else None
            message = await bot.send_message(
                target.chat_id,
                html,
                parse_mode=None if self._preview.plain else ParseMode.HTML,
                message_thread_id=target.message_thread_id,
                reply_to_message_id=reply_to,
                allow_sending_without_reply=True if reply_to is not None else None,
                read_timeout=timeout,
                write_timeout=timeout,
                connect_timeout=timeout,
            )
            self.messages.append(message.message_id)
            self._shown.append(html)
            if self._on_messages is not None:
                # Recorded before anything else happens: after a crash the answer edits this message.
                await self._on_messages(tuple(self.messages))

        return call

    def _edit_call(self, index: int, html: str) -> Callable[[Bot], Awaitable[None]]:
        async def call(bot: Bot) -> None:
            timeout = self._timing.request_timeout_s
            try:
                await bot.edit_message_text(
                    html,
                    self._target.chat_id,
                    self.messages[index],
                    parse_mode=None if self._preview.plain else ParseMode.HTML,
                    read_timeout=timeout,
                    write_timeout=timeout,
                    connect_timeout=timeout,
                )
            except BadRequest as exc:
                if "message is not modified" not in exc.message.lower():
                    raise
            self._shown[index] = html

        return call

    async def _request(self, call: Callable[[Bot], Awaitable[None]], interval: float) -> bool:
        """Make one preview request; True if Telegram took it. Whatever fails is skipped, and a
        refusal changes how this chat is previewed."""
        chat_id = self._target.chat_id
        try:
            async with self._streams.lane:  # the previews' own connections, taken in turn: fair to every chat
                if not self._sender.preview_room(chat_id, reserve=self._timing.reserve):
                    self._next_at = self._clock() + interval  # the chat's rate window is full: later
                    return False
                self._in_request = True
                try:
                    await call(self._streams.bot)
                finally:
                    self._in_request = False
        except RetryAfter as exc:
            self._next_at = self._clock() + retry_after_seconds(exc)
            log.info("telegram_preview_flood_wait", chat_id=chat_id, wait_s=retry_after_seconds(exc))
            return False
        except BadRequest as exc:
            self._refused(exc)
            return False
        except InvalidToken as exc:
            # 404 "Not Found" for a method: a Bot API server that has no drafts.
            if self.mode != "draft":
                raise
            log.warning("telegram_drafts_unsupported", error=exc.message)
            self._streams.refuse(chat_id, "edit", everywhere=True)
            self.mode = "edit"
            return False
        except NetworkError as exc:
            log.info("telegram_preview_failed", chat_id=chat_id, error=exc.message)
            self._next_at = self._clock() + interval
            return False
        except TelegramError as exc:  # Forbidden (blocked), and the like: the answer will tell
            log.info("telegram_preview_stopped", chat_id=chat_id, error=exc.message)
            self.mode = "off"
            return False
        self._next_at = self._clock() + interval
        self._seen()
        return True

    def _refused(self, exc: BadRequest) -> None:
        reason = exc.message.lower()
        chat_id = self._target.chat_id
        if "can't parse entities" in reason and not self._preview.plain:
            log.info("telegram_preview_html_refused", chat_id=chat_id, reason=exc.message)
            self._preview.plain = True
        elif self.mode == "draft":
            self._streams.refuse(chat_id, "edit")
            self.mode = "edit"
        else:
            # The preview message is gone (the user deleted it), or the chat refuses previews: the
            # answer comes whole (finish edits what it can, and sends the rest anew).
            if not edit_impossible(exc):
                self._streams.refuse(chat_id, "off")
            self.mode = "off"

    def _seen(self) -> None:
        if not self._visible:
            self._visible = True
            if self._on_visible is not None:
                self._on_visible()

    # -- finishing ----------------------------------------------------------------------------------

    async def _finish_by_edits(self, chunks: list[str]) -> None:
        """The answer's chunks over the preview messages: each edited where it differs (paced), the
        rest sent anew, previews left over deleted."""
        chat_id, target = self._target.chat_id, self._target
        for index, chunk in enumerate(chunks):
            if index >= len(self.messages):
                await self._sender.send_chunks(chat_id, chunks[index:], message_thread_id=target.message_thread_id)
                return
            if self._shown[index] == chunk:
                continue
            await self._sleep(max(0.0, self._next_at - self._clock()))
            if not await self._sender.edit_text(chat_id, self.messages[index], chunk):
                # The preview is gone: what it was to show goes anew, and later previews go.
                reply_to = target.reply_to_message_id if index == 0 else None
                for stale in self.messages[index:]:
                    await self._sender.delete_message(chat_id, stale)
                await self._sender.send_chunks(
                    chat_id, chunks[index:], message_thread_id=target.message_thread_id, reply_to_message_id=reply_to
                )
                return
            self._shown[index] = chunk
            self._next_at = self._clock() + self._timing.edit_interval_s
        for stale in self.messages[len(chunks) :]:
            await self._sender.delete_message(chat_id, stale)
