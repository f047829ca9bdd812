"""Albums: the photos (or files) a user sends together arrive as separate updates sharing a
`media_group_id`, within about a second. They are gathered here into one message, one turn.

An album is complete when no part of it has arrived for `wait_seconds`. Meanwhile whatever else its
conversation sends waits behind it, so that messages keep their order (the conversation deduplicates
by update id: a later message handled first would make the album look already answered). The album
goes on as one message under its first part's update id; the channel is told its other update ids,
so that answering the album marks all of its updates done (`TelegramChannel.add_album`), and a replay
after a crash gathers the same parts again into the same message.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from actors.protocol import UserMessage
from channels.telegram.routing import Routed
from ops.aio import wait_event

__all__ = ["AlbumCollector"]

log = structlog.get_logger(__name__)

RouteNow = Callable[[Routed, int, float, bool], None]
"""Routes a message (its route, update id, when it arrived on the loop's clock, whether it is a replay)."""


@dataclass(slots=True)
class _Album:
    group: str
    received_at: float
    parts: list[tuple[Routed, int]] = field(default_factory=list)
    replay: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class AlbumCollector:
    """Gathers album parts per conversation (see the module docstring).

    `route` routes a message now; `add_album(first, others)` tells the channel an album's update ids;
    `ignore(update_id)` marks an update done without answering it (an album in a group that no part of
    addresses to the bot). `sleep` is the time the waits use (tests pass a fake).
    """

    def __init__(
        self,
        route: RouteNow,
        add_album: Callable[[int, tuple[int, ...]], None],
        ignore: Callable[[int], None],
        wait_seconds: float,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._route = route
        self._add_album = add_album
        self._ignore = ignore
        self._wait = wait_seconds
        self._sleep = sleep
        self._albums: dict[str, _Album] = {}
        self._held: dict[str, list[tuple[Routed, int, float, bool]]] = {}
        self._timers: set[asyncio.Task[None]] = set()

    def take(self, routed: Routed, update_id: int, arrived: float, replay: bool) -> bool:
        """Take an album part, or a message that must wait behind its conversation's album; False when
        the message is neither (route it now). `arrived` is when it was received (the loop's clock)."""
        conversation = routed.conversation_id
        album = self._albums.get(conversation)
        if routed.media_group is None:
            if album is None:
                return False
            self._held.setdefault(conversation, []).append((routed, update_id, arrived, replay))
            return True
        if album is not None and album.group != routed.media_group:
            # A new album begins: the one before it is complete (Telegram sends an album's parts together).
            self._flush(conversation)
            album = None
        if album is None:
            album = self._albums[conversation] = _Album(routed.media_group, arrived, replay=replay)
            timer = asyncio.get_running_loop().create_task(self._expire(conversation, album), name="album-wait")
            self._timers.add(timer)
            timer.add_done_callback(self._timer_done)
        album.parts.append((routed, update_id))
        album.arrived.set()
        return True

    async def _expire(self, conversation: str, album: _Album) -> None:
        while True:
            album.arrived.clear()
            if not await wait_event(album.arrived, self._wait, sleep=self._sleep):
                break
        if self._albums.get(conversation) is album:
            self._flush(conversation)

    def _flush(self, conversation: str) -> None:
        """Route the conversation's album as one message, then what waited behind it."""
        album = self._albums.pop(conversation)
        parts = sorted(album.parts, key=lambda part: part[1])
        first, first_id = parts[0]
        others = tuple(update_id for _, update_id in parts[1:])
        if not any(routed.addressed for routed, _ in parts):
            for _, update_id in parts:
                self._ignore(update_id)
        else:
            self._add_album(first_id, others)
            log.info("album_gathered", update_id=first_id, parts=len(parts), conversation_id=conversation)
            # The album's answer is due as if it came with its first part (the deadline counts from it).
            self._route(_merged(first, [routed for routed, _ in parts]), first_id, album.received_at, album.replay)
        for routed, update_id, arrived, replay in self._held.pop(conversation, []):
            if not self.take(routed, update_id, arrived, replay):
                self._route(routed, update_id, arrived, replay)

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self._timers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("album_wait_failed", error=repr(task.exception()))

    async def aclose(self) -> None:
        """Stop waiting: albums not yet complete are left in the ingress log, for the next start."""
        for task in self._timers:
            task.cancel()
        if self._timers:
            await asyncio.wait(list(self._timers))


def _merged(first: Routed, parts: list[Routed]) -> Routed:
    """One message of an album's parts (in order): their captions, their files, the first part's target."""
    messages = [part.message for part in parts if isinstance(part.message, UserMessage)]
    assert isinstance(first.message, UserMessage)
    text = "\n\n".join(message.text for message in messages if message.text.strip())
    attachments = tuple(item for message in messages for item in message.attachments)
    message = dataclasses.replace(first.message, text=text, attachments=attachments)
    return Routed(first.conversation_id, message, None, True)
