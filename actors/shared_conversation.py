"""The conversation actor of a worker that shares its store with other workers (the SQS FIFO queue).

The queue hands one conversation's messages to one worker at a time, but not always the same
worker: between two messages another worker may have written to the history this activation holds
in memory. So before each message the actor asks the store for the history's last `seq` (one
consistent read of one key) and reloads when it is not the one it wrote last. A conditional write
that still finds its `seq` taken (a worker that lost its message to another after a visibility
timeout and went on anyway) reloads and handles the message again, which the conversation's own
records then deduplicate; nothing is ever overwritten.
"""

from __future__ import annotations

import structlog

from actors._parking import RetryParked
from actors._store_faults import Inbox
from actors.media_conversation import MediaConversationActor
from stores import ConflictError, StoreError

__all__ = ["CONFLICT_RETRIES", "SharedConversationActor"]

log = structlog.get_logger(__name__)

CONFLICT_RETRIES = 3
"""Reloads after a conflicting write before the message crashes the actor (which retries it once more)."""


class SharedConversationActor(MediaConversationActor):
    """A conversation actor that notices other workers' writes (see the module)."""

    _pipelined = False
    """Every write lands before the next message, which asks the store whether it is still the last."""
    _fresh = False
    """The history was loaded within this message: no need to ask whether it is stale."""

    async def _load(self) -> None:
        await super()._load()
        self._fresh = True

    async def handle(self, message: Inbox) -> str | None:
        """Reload if another worker wrote since, then handle; a conflict reloads and handles again."""
        if not isinstance(message, RetryParked) and self._loaded and not self._fresh:
            await self._reload_if_stale()
        try:
            for attempt in range(1, CONFLICT_RETRIES + 1):
                try:
                    return await super().handle(message)
                except ConflictError as exc:
                    if attempt == CONFLICT_RETRIES:
                        raise
                    log.warning("conversation_write_conflict", seq=exc.seq, attempt=attempt)
                    self._loaded = False  # the next attempt reads what the other writer stored
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            self._fresh = False

    async def _reload_if_stale(self) -> None:
        try:
            stored = await self._store.last_seq(self.conversation_id)
        except StoreError as exc:
            # Not knowing is treated as stale: the load that follows parks the message if it fails too.
            log.warning("conversation_staleness_unknown", error=repr(exc))
            self._loaded = False
            return
        local = self._next_seq - 1
        if (stored if stored is not None else -1) != local:
            log.info("conversation_reloaded_after_other_writer", stored_seq=stored, local_seq=local)
            self._loaded = False
