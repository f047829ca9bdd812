"""What a conversation keeps in memory of its records, and how far back an activation reads them.

The model sees, of a conversation, its latest summary and the records after what that covers, since
the last reset, cut to the context budget (`llm.context`). An active conversation holds that much
and a bounded margin more (`History`), and an activation reads from the store only that much
(`VisibleStart`, the `stop_at` of `ConversationStore.load_recent`): memory and loading time follow the
context budget, not the conversation's age. Nothing is ever deleted from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llm.context import estimate_stored_tokens, estimate_tokens
from llm.records import AssistantRecord, Record, ResetRecord, SummaryRecord, ToolResultRecord, UserRecord

__all__ = ["History", "VisibleStart", "record_tokens"]


def record_tokens(record: Record) -> int:
    """What a record costs the model by the estimate (markers cost nothing)."""
    if isinstance(record, UserRecord | AssistantRecord | ToolResultRecord):
        return estimate_tokens(record)
    return 0


def _held(record: Record) -> int:
    # What holding a record counts against the cap: a marker costs the model nothing, but a chat of
    # commands only (notices and delivered markers) must not grow without bound either.
    return record_tokens(record) or 1


class History:
    """The records of one conversation the model may still see, bounded by `cap_tokens`.

    `add` folds records in, in `seq` order: a reset empties it (and is kept, as its first record); a
    summary drops the records it covers and is kept apart, first in `records()`; past `cap_tokens` (by
    the estimate; a marker counts 1) the oldest exchanges are dropped a user message at a time, never
    the last user message or what follows it (the turn in progress). The cap is a margin above the
    context budget, so that the summariser has what the model no longer sees in full, and plain
    trimming is the fallback when summaries fail.
    """

    def __init__(self, cap_tokens: int) -> None:
        self.cap_tokens = cap_tokens
        self.summary: SummaryRecord | None = None
        self.resets = 0
        """How many resets were folded in: a summary planned before a reset must not be stored after it."""
        self._records: list[Record] = []
        """A list, not a deque: most conversations hold a few records, and a deque's first block
        alone is 624 bytes; dropping from the front happens once per trim, as one slice."""
        self._tokens = 0
        self._last_user_seq: int | None = None

    def __len__(self) -> int:
        return len(self._records) + (self.summary is not None)

    @property
    def tokens(self) -> int:
        """What the records held count against the cap (the summary not included)."""
        return self._tokens

    def records(self) -> list[Record]:
        """The summary (if any), then the records after what it covers, in `seq` order."""
        held = list(self._records)
        return [self.summary, *held] if self.summary is not None else held

    def add(self, record: Record) -> None:
        """Fold in the next record (see the class docstring)."""
        if isinstance(record, ResetRecord):
            self._records.clear()
            self._tokens, self.summary, self._last_user_seq = 0, None, None
            self.resets += 1
        elif isinstance(record, SummaryRecord):
            if self.summary is not None and record.last_seq <= self.summary.last_seq:
                return  # an older summary than the one held: it adds nothing
            self.summary = record
            self._drop_while(lambda held: held.seq is not None and held.seq <= record.last_seq)
            return
        if isinstance(record, UserRecord):
            self._last_user_seq = record.seq
        self._records.append(record)
        self._tokens += _held(record)
        if self._tokens > self.cap_tokens:
            self._drop_oldest_exchanges()

    def _drop_while(self, covered: Callable[[Record], bool]) -> None:
        records = self._records
        count = 0
        while count < len(records) and covered(records[count]):
            self._tokens -= _held(records[count])
            count += 1
        del records[:count]

    def _drop_oldest_exchanges(self) -> None:
        """Drop from the front, an exchange at a time, until under the cap or the front is a message
        of the turn in progress (the last user message and what follows it)."""
        records = self._records
        count = 0

        def droppable() -> bool:
            return count < len(records) and not self._in_progress(records[count])

        while self._tokens > self.cap_tokens and droppable():
            self._tokens -= _held(records[count])
            count += 1
            while droppable() and not isinstance(records[count], UserRecord):
                self._tokens -= _held(records[count])
                count += 1
        del records[:count]

    def _in_progress(self, record: Record) -> bool:
        """A message of the turn in progress (markers never are: the model does not see them)."""
        if not isinstance(record, UserRecord | AssistantRecord | ToolResultRecord):
            return False
        last_user = self._last_user_seq
        return last_user is not None and (record.seq is None or record.seq >= last_user)


class VisibleStart:
    """`stop_at` for `ConversationStore.load_recent`: stops at the oldest record an activation needs.

    Shown the stored records newest first (as JSON), it stops at the last reset; after the latest
    summary, at the first record that summary does not cover; and, where neither comes first, at the
    user message that brings what was read past `cap_tokens` (the `History` cap: older records are
    beyond what the model may see), or at any record past twice that (no user message in sight: a
    chat of commands only). One object serves one load: it keeps count.
    """

    def __init__(self, cap_tokens: int) -> None:
        self.cap_tokens = cap_tokens
        self.tokens = 0
        self._floor: int | None = None

    def __call__(self, data: Mapping[str, Any]) -> bool:
        seq = data.get("seq")
        kind = data.get("type")
        if kind == "reset":
            return True
        if self._floor is None and kind == "summary":
            last = data.get("last_seq")
            if isinstance(last, int) and not isinstance(last, bool):
                self._floor = last + 1
        if self._floor is not None:
            return isinstance(seq, int) and seq <= self._floor
        self.tokens += estimate_stored_tokens(data) or 1
        if self.tokens > 2 * self.cap_tokens:
            return True
        return self.tokens > self.cap_tokens and data.get("role") == "user"
