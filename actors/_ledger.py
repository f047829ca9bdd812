"""What a conversation holds of each Telegram update: the question replay deduplication asks."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llm import AssistantRecord, DeliveredRecord, NoticeRecord, PreviewRecord, Record, ResetRecord

__all__ = ["Stage", "UpdateLedger"]

Stage = Literal["received", "answered", "delivered"]
"""How far an update got: records of it exist; its answer is recorded; the answer was delivered."""


@dataclass(slots=True)
class _Open:
    """An update whose answer has not been delivered yet."""

    stage: Stage = "received"
    answer: AssistantRecord | NoticeRecord | None = None
    reset: bool = False
    """Its /reset marker is stored (a replay must not store a second one)."""
    preview: tuple[int, ...] = ()
    """Messages that show a preview of its answer (a group's, edited as it grows)."""


class UpdateLedger:
    """The updates a conversation holds records of, as its records are loaded and made.

    Deduplication asks `stage(update_id)`: None means the conversation holds no record of the update,
    so it is new, whatever its id; otherwise how far it got.

    `floor`: for a loader that reads only the newer part of a history (from a reset or summary
    marker on), the highest update id of the records it skipped: those updates were all handled
    (a conversation handles its updates in order), so any update up to it counts as delivered.
    None (the default) when the whole history was loaded.

    Memory: 8 bytes per update seen (a sorted array of ids), plus the few updates not yet delivered.
    """

    __slots__ = ("_floor", "_open", "_seen")

    def __init__(self, floor: int | None = None) -> None:
        self._floor = floor
        self._seen = array("q")
        self._open: dict[int, _Open] = {}

    @classmethod
    def for_loaded(cls, stored: Sequence[Mapping[str, Any]]) -> UpdateLedger:
        """An empty ledger for the records a loader read (as JSON, in `seq` order). When they do not
        start at the history's first record (`load_recent` stopped at a reset or summary), every
        update older than all those they mention was handled before them: it counts as delivered."""
        if not stored or stored[0].get("seq") == 0:
            return cls()
        ids = [item["update_id"] for item in stored if type(item.get("update_id")) is int]
        return cls(min(ids) - 1) if ids else cls()

    def track(self, record: Record) -> None:
        """Fold one record in (records come in `seq` order)."""
        update_id = record.update_id
        if update_id is None:
            return
        seen = self._seen
        if not seen or update_id > seen[-1]:
            seen.append(update_id)
            self._open[update_id] = _Open()
        elif not self._holds(update_id):
            # An update handled out of id order (parked while the store failed, say): rare.
            seen.insert(bisect.bisect_left(seen, update_id), update_id)
            self._open[update_id] = _Open()
        entry = self._open.get(update_id)
        if entry is None:
            return  # delivered already; later records of it change nothing
        if isinstance(record, DeliveredRecord):
            del self._open[update_id]
        elif isinstance(record, NoticeRecord) or (isinstance(record, AssistantRecord) and not record.tool_calls):
            entry.stage, entry.answer = "answered", record
        elif isinstance(record, ResetRecord):
            entry.reset = True
        elif isinstance(record, PreviewRecord):
            entry.preview = record.message_ids

    def stage(self, update_id: int) -> Stage | None:
        """How far the update got, or None if the conversation holds no record of it."""
        entry = self._open.get(update_id)
        if entry is not None:
            return entry.stage
        if self._holds(update_id) or (self._floor is not None and update_id <= self._floor):
            return "delivered"
        return None

    def answer(self, update_id: int) -> AssistantRecord | NoticeRecord | None:
        """The recorded answer of an update not yet delivered."""
        entry = self._open.get(update_id)
        return entry.answer if entry is not None else None

    def preview(self, update_id: int | None) -> tuple[int, ...]:
        """The messages showing a preview of the answer of an update not yet delivered (a crash left
        them: the answer finishes them by editing)."""
        entry = self._open.get(update_id) if update_id is not None else None
        return entry.preview if entry is not None else ()

    def reset_recorded(self, update_id: int | None) -> bool:
        """True if the update's /reset marker is already stored."""
        entry = self._open.get(update_id) if update_id is not None else None
        return entry is not None and entry.reset

    def _holds(self, update_id: int) -> bool:
        seen = self._seen
        index = bisect.bisect_left(seen, update_id)
        return index < len(seen) and seen[index] == update_id
