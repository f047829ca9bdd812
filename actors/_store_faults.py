"""What a conversation actor does while its store fails: park messages in order, tell the user
once, retry with backoff (`actors._parking`), and on giving up tell the users of what it held."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import structlog

from actors import texts
from actors._parking import Parking, RetryParked
from actors.protocol import ConversationMessage, DeliveryFailed, Reply, ReplyChannel, UserMessage
from actors.runtime import ActorStopped
from stores import StoreError

__all__ = ["Inbox", "StoreFaults"]

log = structlog.get_logger(__name__)

Inbox = ConversationMessage | RetryParked
"""What a conversation actor's mailbox holds."""


class StoreFaults:
    """The conversation actor's handling of store faults (a mixin of `ConversationActor`, whose state
    and steps it uses, declared below for the type checker)."""

    if TYPE_CHECKING:
        conversation_id: str
        _channel: ReplyChannel
        _parking: Parking
        _loaded: bool

        async def _load(self) -> None: ...
        async def _handle_update(self, message: ConversationMessage) -> str | None: ...
        async def on_dead_letter(self, message: Inbox, error: BaseException) -> None: ...
        def tell_self(self, message: Inbox) -> None: ...

    async def _park(self, message: ConversationMessage, error: StoreError | None) -> None:
        """Keep the message until the store works again; tell the user once per fault."""
        self._loaded = False  # what a failed write left is read back from the store before going on
        if isinstance(message, UserMessage):
            message = dataclasses.replace(message, received_at=None)  # its deadline starts with its retry
        if not self._parking.park(message):
            log.warning("message_refused", update_id=message.update_id, reason="parked_full")
            await self._notify(message, texts.BUSY, done=True)
            return
        delay = self._parking.schedule()
        log.warning(
            "conversation_store_unavailable",
            update_id=message.update_id,
            parked=len(self._parking.messages),
            retry_in_s=round(delay, 3),
            error=repr(error) if error is not None else None,
        )
        if not self._parking.told:
            self._parking.told = True
            await self._notify(message, texts.STORE_UNAVAILABLE, done=False)

    def _retry_soon(self) -> None:
        # Stopping: the parked updates stay pending, and are replayed at the next start.
        with contextlib.suppress(ActorStopped):
            self.tell_self(RetryParked())

    async def _retry_parked(self) -> None:
        if not self._parking:
            return
        if await self._parking.drain(self._handle_parked, self.on_dead_letter):
            log.info("conversation_store_recovered")

    async def _handle_parked(self, message: ConversationMessage) -> None:
        try:
            if not self._loaded:
                await self._load()
            await self._handle_update(message)
        except StoreError:
            self._loaded = False
            raise

    async def _notify(self, message: ConversationMessage, text: str, *, done: bool) -> None:
        """A notice that is not an answer (nothing is recorded); `done` marks the update handled."""
        try:
            await self._channel.deliver(Reply(self.conversation_id, text, message.target, None, kind="error"))
        except DeliveryFailed as exc:
            log.warning("notice_undeliverable", update_id=message.update_id, reason=exc.reason)
        if done and message.update_id is not None:
            await self._channel.done(message.update_id)

    async def on_given_up(self, messages: list[Inbox]) -> None:
        """The actor crashed past its restart intensity: tell the users of what it was told (and of
        what it had parked) that their messages were skipped, so none is dropped in silence."""
        self._parking.cancel()
        left = [*self._parking.messages, *messages]
        self._parking.messages.clear()
        log.error("conversation_given_up_with_messages", conversation_id=self.conversation_id, messages=len(left))
        for message in left:
            if not isinstance(message, RetryParked):
                await self._notify(message, texts.DEAD_LETTER, done=True)
