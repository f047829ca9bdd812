"""The conversation store and ingress log interfaces every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

__all__ = ["ConflictError", "ConversationStore", "IngressLog", "Record", "StoreError"]

Record = dict[str, Any]
"""One JSON-serialisable history record. Its `seq` (int) numbers it within its conversation:
0 for the first, then each record one more than the one before. Stores know nothing else of it."""


class StoreError(Exception):
    """Root of every store failure. `conversation_id` names the conversation, where one is concerned."""

    def __init__(self, message: str, *, conversation_id: str | None = None) -> None:
        super().__init__(message)
        self.conversation_id = conversation_id


class ConflictError(StoreError):
    """A record with this `seq` already exists: another writer got there first. Nothing was overwritten."""

    def __init__(self, conversation_id: str, seq: int) -> None:
        super().__init__(f"record {seq} already exists", conversation_id=conversation_id)
        self.seq = seq


class _Resource(ABC):  # noqa: B024 - abstract only to forbid direct use; every hook has a default
    """Opened with `async with` (or `open()`/`close()`): clients and files live between the two."""

    async def open(self) -> None:  # noqa: B027 - a backend without resources needs no opening
        """Open clients and files; create tables or directories where the settings allow."""

    async def close(self) -> None:  # noqa: B027 - a backend without resources needs no closing
        """Flush and close what `open` opened. Safe to call twice, and after an `open` that failed
        half-way (`async with` calls it then)."""

    async def __aenter__(self) -> Self:
        # As PTB's Application.__aenter__: if opening fails half-way, what was opened is closed,
        # since `async with` will not call __aexit__ for a resource it never entered.
        try:
            await self.open()
        except BaseException as exc:
            try:
                await self.close()
            except Exception as close_exc:  # the failed open is the error to report; this rides along
                exc.add_note(f"closing after the failed open also failed: {close_exc!r}")
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class ConversationStore(_Resource):
    """Append-only history per conversation id (any string: the store makes it safe to use)."""

    @abstractmethod
    async def load(self, conversation_id: str) -> list[Record]:
        """Every record of the conversation in `seq` order; `[]` for an unknown one.

        A damaged history never raises: what can be read is returned and the damage is logged.
        """

    async def load_recent(self, conversation_id: str, stop_at: Callable[[Record], bool]) -> list[Record]:
        """The newest records of the conversation, in `seq` order: read from the newest back, up to
        and including the first record for which `stop_at` returns True (or to the beginning).

        `stop_at` sees each record once, newest first, and may keep state between calls (a summary
        marker tells it how far back the records it covers begin). It may be called in a worker
        thread, so it must not touch the event loop. Damage is handled as by `load`: never raised.
        The backends read from the end of the history, so the cost is that of the records returned,
        not of the history's length. This default, for stores without such a read, uses `load`.
        """
        records = await self.load(conversation_id)
        for index in range(len(records) - 1, -1, -1):
            if stop_at(records[index]):
                return records[index:]
        return records

    async def last_seq(self, conversation_id: str) -> int | None:
        """The `seq` of the conversation's newest record (None when it has none), read consistently:
        a worker sharing the store asks this before a message, to see whether another one wrote since.
        This default reads the newest record; a backend may read less."""
        records = await self.load_recent(conversation_id, lambda record: True)
        return int(records[-1]["seq"]) if records else None

    @abstractmethod
    async def append(self, conversation_id: str, records: Sequence[Record]) -> None:
        """Durably add `records` (their `seq` continue the history) before returning.

        Raises ConflictError if a `seq` is already taken, StoreError on any other failure.
        The cost does not grow with the history's length.
        """

    @abstractmethod
    async def delete(self, conversation_id: str) -> None:
        """Forget the conversation entirely. Deleting an unknown one is not an error."""


class IngressLog(_Resource):
    """Telegram updates held durably from before their offset is acknowledged until answered."""

    @abstractmethod
    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        """Durably record raw updates (each has an int `update_id`) before returning.

        Appending an update that is already held is not an error and keeps one copy.
        """

    @abstractmethod
    async def done(self, update_id: int) -> None:
        """Mark an update answered. Need not be durable: a lost `done` only means a replay,
        which the conversation actor recognises and skips."""

    @abstractmethod
    async def pending(self) -> list[dict[str, Any]]:
        """Updates appended and not yet done, in `update_id` order."""
