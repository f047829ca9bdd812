"""Answers shown as the model writes them: drafts in private chats, an edited message in groups.

A private chat gets `sendMessageDraft` previews (Bot API 10.0): ephemeral, so the finished answer
is still sent once with `sendMessage`. A group gets a first message with the first words, then
`editMessageText` at most once per `edit_interval_s`; the finished answer is its last edit (and
further messages when it is longer than one). A chat that refuses drafts (a 400) is switched to
edits, and one that refuses those to whole answers, remembered for a while; a refused method (a
Bot API server without drafts) switches every chat.

Previews are best effort, and never delay an answer: they go on connections of their own (`bot`,
taken by the chats in turn), only where the chat's rate window has room to spare for answers (the
sender's `preview_room`); a refused or failed preview is skipped, never retried; and when the answer
goes, a preview still waiting is dropped, one in flight is let finish so that it never lands after it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from telegram import Bot

from actors.protocol import PreviewMessages, ReplyTarget
from channels.telegram._reply_stream import Mode, TelegramReplyStream
from channels.telegram.sender import TelegramSender
from ops.backoff import Clock, Sleep

__all__ = ["StreamTiming", "TelegramReplyStream", "TelegramStreams"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """The pace of previews."""

    first_delay_s: float = 0.1
    """The first preview waits this long after the first words: an answer finished by then needs none
    (it comes as fast itself), which spares quick exchanges a request."""
    draft_interval_s: float = 0.4
    """At most one draft per chat this often."""
    edit_interval_s: float = 2.0
    """At most one preview message or edit per chat this often (groups: 20 messages a minute)."""
    draft_refresh_s: float = 20.0
    """A draft unchanged this long is sent again: Telegram drops one after ~30 s (a long tool call)."""
    reserve: int = 3
    """Places of a rate window that previews leave for answers."""
    request_timeout_s: float = 5.0
    """A preview request that takes longer is given up (the answer waits for one in flight)."""
    connections: int = 8
    """Previews go on connections of their own, this many at once, taken by chats in turn."""


class TelegramStreams:
    """Opens the preview stream of each answer, and remembers which chats refused drafts or edits.

    `aclose` ends the preview tasks still running (at shutdown). The memory of refusals is bounded
    (`memory` chats, least recently refused forgotten first).
    """

    def __init__(
        self,
        sender: TelegramSender,
        bot: Bot,
        timing: StreamTiming | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        memory: int = 10_000,
    ) -> None:
        self.sender = sender
        self.bot = bot
        """The client previews are sent with: its own connections, so that they never delay an answer."""
        self.timing = timing or StreamTiming()
        self.lane = asyncio.Semaphore(self.timing.connections)
        self.clock = clock
        self.sleep = sleep
        self._memory = memory
        self._refused: OrderedDict[int, Mode] = OrderedDict()
        self._no_drafts = False
        # Draft ids only need to differ between answers in a chat; a random start keeps a restart's
        # drafts from animating out of the previous run's.
        self._draft_ids = itertools.count(random.randrange(1, 1 << 30) * 64, 64)
        self.tasks: set[asyncio.Task[None]] = set()

    def open(
        self,
        target: ReplyTarget,
        text: Callable[[], str],
        *,
        shown: tuple[int, ...] = (),
        on_messages: PreviewMessages | None = None,
        on_visible: Callable[[], None] | None = None,
    ) -> TelegramReplyStream:
        """A stream for one answer (see `StreamingReplyChannel.open_stream`)."""
        mode = self.mode_for(target.chat_id, shown)
        return TelegramReplyStream(self, target, text, mode, shown, on_messages, on_visible)

    def mode_for(self, chat_id: int, shown: tuple[int, ...] = ()) -> Mode:
        """How answers in this chat are previewed now."""
        refused = self._refused.get(chat_id)
        if refused == "off" or (refused == "edit" and not shown):
            return refused
        if shown or chat_id < 0 or self._no_drafts:  # groups have negative ids; drafts are for private chats
            return "edit"
        return "draft"

    def refuse(self, chat_id: int, mode: Mode, *, everywhere: bool = False) -> None:
        """The chat refused a way of previewing: use `mode` there from now on (drafts: everywhere)."""
        if everywhere:
            self._no_drafts = True
        self._refused[chat_id] = mode
        self._refused.move_to_end(chat_id)
        while len(self._refused) > self._memory:
            self._refused.popitem(last=False)
        log.warning("telegram_preview_refused", chat_id=chat_id, now=mode, everywhere=everywhere)

    def new_draft_id(self) -> int:
        """A draft id for one answer (its chunks add their index to it)."""
        return next(self._draft_ids)

    def track(self, task: asyncio.Task[None]) -> None:
        """Own a preview task until it ends."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def aclose(self) -> None:
        """Let preview tasks end their request in flight (a few seconds at most), then cancel them."""
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks), timeout=self.timing.request_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
