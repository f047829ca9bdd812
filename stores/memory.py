"""In-memory conversation store and ingress log: for tests and runs that want no persistence."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stores._records import encode_batch, encode_updates
from stores.base import ConflictError, ConversationStore, IngressLog, Record

__all__ = ["InMemoryConversationStore", "InMemoryIngressLog"]


class InMemoryConversationStore(ConversationStore):
    """Histories in a dict, lost at exit. Behaves like the durable stores: records are copied
    through JSON on the way in and out (so a caller's later mutation changes nothing, and a
    record that the file store would refuse is refused here too), and a `seq` not above the
    last one raises ConflictError."""

    def __init__(self) -> None:
        self._histories: dict[str, list[bytes]] = {}
        self._last_seq: dict[str, int] = {}

    async def load(self, conversation_id: str) -> list[Record]:
        """Every record of the conversation, as fresh copies."""
        return [json.loads(data) for data in self._histories.get(conversation_id, [])]

    async def load_recent(self, conversation_id: str, stop_at: Callable[[Record], bool]) -> list[Record]:
        """The newest records, back to the first for which `stop_at` is True (see the base class)."""
        stored = self._histories.get(conversation_id, [])
        recent: list[Record] = []
        for data in reversed(stored):
            record = json.loads(data)
            recent.append(record)
            if stop_at(record):
                break
        recent.reverse()
        return recent

    async def append(self, conversation_id: str, records: Sequence[Record]) -> None:
        """Add `records`; ConflictError if the first `seq` is not above the last one stored."""
        batch = encode_batch(conversation_id, records)
        if not batch:
            return
        last = self._last_seq.get(conversation_id, -1)
        if batch[0].seq <= last:
            raise ConflictError(conversation_id, batch[0].seq)
        self._histories.setdefault(conversation_id, []).extend(item.data for item in batch)
        self._last_seq[conversation_id] = batch[-1].seq

    async def delete(self, conversation_id: str) -> None:
        """Forget the conversation."""
        self._histories.pop(conversation_id, None)
        self._last_seq.pop(conversation_id, None)


class InMemoryIngressLog(IngressLog):
    """Pending updates in a dict, lost at exit."""

    def __init__(self) -> None:
        self._pending: dict[int, bytes] = {}

    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        """Hold copies of `updates`; one already held keeps its first copy."""
        for update_id, data in encode_updates(updates):
            self._pending.setdefault(update_id, data)

    async def done(self, update_id: int) -> None:
        """Forget the update; an unknown id is ignored."""
        self._pending.pop(update_id, None)

    async def pending(self) -> list[dict[str, Any]]:
        """Held updates in `update_id` order, as fresh copies."""
        return [json.loads(self._pending[key]) for key in sorted(self._pending)]
