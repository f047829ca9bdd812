"""A conversation's newest records from DynamoDB items read in descending sort-key order.

`DynamoDBConversationStore.load_recent` queries with `ScanIndexForward=False` and feeds each page
to a `NewestFirst` (in a worker thread: decompressing and parsing is CPU work) until the caller's
`stop_at` has seen the oldest record it needs; no page beyond that is read. A split record's chunks
(`seq.000001`, ...) come before their head in this order, so they are held until the head arrives.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import structlog

from stores._dynamodb_table import SORT_KEY
from stores._records import decode_record
from stores.base import Record

__all__ = ["NewestFirst"]

log = structlog.get_logger(__name__)

_PART_SCALE = 1_000_000  # chunk k of record n sits at sort key n + k / _PART_SCALE (as stores.dynamodb writes)


class NewestFirst:
    """Collects records from items in descending sort-key order until `stop_at` says enough."""

    def __init__(self, conversation_id: str, stop_at: Callable[[Record], bool]) -> None:
        self.conversation_id = conversation_id
        self.stop_at = stop_at
        self.stopped = False
        self._newest_first: list[Record] = []
        self._chunk_seq: int | None = None
        self._chunks: dict[int, bytes] = {}

    def feed(self, items: list[dict[str, Any]]) -> bool:
        """Take one page of items; True once `stop_at` has accepted a record (read no more pages)."""
        for item in items:
            key = Decimal(item[SORT_KEY]["N"])
            seq = int(key)
            if key != seq:
                if self._chunk_seq != seq:
                    self._chunk_seq, self._chunks = seq, {}
                if "zrecord" in item:
                    self._chunks[int((key - seq) * _PART_SCALE)] = item["zrecord"]["B"]
                continue
            chunks = self._chunks if self._chunk_seq == seq else {}
            self._chunk_seq, self._chunks = None, {}
            record = self._record(seq, item, chunks)
            if record is None:
                continue
            self._newest_first.append(record)
            if self.stop_at(record):
                self.stopped = True
                return True
        return False

    def records(self) -> list[Record]:
        """What was collected, in `seq` order."""
        return self._newest_first[::-1]

    def _record(self, seq: int, item: Mapping[str, Any], chunks: dict[int, bytes]) -> Record | None:
        packed: bytes | None = item.get("zrecord", {}).get("B")
        if packed is not None and "parts" in item:
            parts = int(item["parts"]["N"])
            if sorted(chunks) != list(range(1, parts)):
                log.error("store_record_incomplete", conversation_id=self.conversation_id, seq=seq, parts=parts)
                return None
            packed = b"".join([packed, *(chunks[index] for index in range(1, parts))])
        try:
            data = zlib.decompress(packed) if packed is not None else item.get("record", {}).get("S")
            if data is None:
                raise ValueError("no payload")
            record = decode_record(data)
        except (ValueError, zlib.error):
            log.error("store_record_unreadable", conversation_id=self.conversation_id, seq=seq)
            return None
        if record["seq"] != seq:
            log.error(
                "store_record_unreadable", conversation_id=self.conversation_id, seq=seq, stored_seq=record["seq"]
            )
            return None
        return record
