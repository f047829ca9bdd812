"""The ReplyChannel of the conversation actors on Telegram: replies through the flood-controlled
sender, "typing...", and marking updates done in the ingress log (an album's all together)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import structlog

from actors.protocol import DeliveryFailed, PreviewMessages, Reply, ReplyStream, ReplyTarget
from channels.telegram.sender import DeliveryError, TelegramSender
from channels.telegram.streaming import TelegramStreams
from stores import IngressLog, StoreError

__all__ = ["TelegramChannel"]

log = structlog.get_logger(__name__)


class TelegramChannel:
    """The ReplyChannel conversation actors use: sends through the gateway's flood-controlled sender.
    With `streams`, it is a StreamingReplyChannel: answers are previewed as they are written."""

    def __init__(self, sender: TelegramSender, ingress: IngressLog, streams: TelegramStreams | None = None) -> None:
        self._sender = sender
        self._ingress = ingress
        self._streams = streams
        self._albums: dict[int, tuple[int, ...]] = {}

    def open_stream(
        self,
        target: ReplyTarget,
        text: Callable[[], str],
        *,
        shown: tuple[int, ...] = (),
        on_messages: PreviewMessages | None = None,
        on_visible: Callable[[], None] | None = None,
    ) -> ReplyStream | None:
        """A preview of one answer (see StreamingReplyChannel), or None when streaming is off."""
        if self._streams is None:
            return None
        return self._streams.open(target, text, shown=shown, on_messages=on_messages, on_visible=on_visible)

    async def deliver(self, reply: Reply) -> None:
        """Send the reply (split, formatted, retried); DeliveryFailed if Telegram never will take it."""
        target = reply.target
        try:
            await self._sender.send_text(
                target.chat_id,
                reply.text,
                message_thread_id=target.message_thread_id,
                reply_to_message_id=target.reply_to_message_id,
            )
        except DeliveryError as exc:
            raise DeliveryFailed(reply.conversation_id, type(exc).__name__) from exc

    def typing(self, target: ReplyTarget) -> AbstractAsyncContextManager[None]:
        """ "typing..." in the chat while the block runs."""
        return self._sender.typing_while(target.chat_id, target.message_thread_id)

    async def done(self, update_id: int) -> None:
        """The update is answered: it leaves the ingress log (an album's first update: all of the
        album's). A mark that cannot be written only means a replay, which the conversation
        recognises: it is logged, not raised."""
        # The album's other parts first: a crash in between leaves the first part, which a replay
        # recognises as answered, not the others, which would look like a new message.
        for update in (*self._albums.pop(update_id, ()), update_id):
            try:
                await self._ingress.done(update)
            except StoreError as exc:
                log.warning("ingress_done_failed", update_id=update, error=repr(exc))

    def add_album(self, first: int, others: tuple[int, ...]) -> None:
        """The updates `others` are parts of the album handled as update `first`: done with it."""
        if others:
            self._albums[first] = others
