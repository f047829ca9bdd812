"""Validation and JSON encoding of records, shared by every backend."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stores.base import Record, StoreError

__all__ = ["EncodedRecord", "decode_record", "encode_batch", "encode_json", "encode_updates", "seq_of"]


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """A record checked and serialised once, ready for any backend to write."""

    seq: int
    data: bytes
    """Compact UTF-8 JSON without a newline (JSON escapes every control character)."""


def seq_of(record: Mapping[str, Any]) -> int | None:
    """The record's `seq` if it is a non-negative int (bool is not a number here), else None."""
    seq = record.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0:
        return seq
    return None


def encode_json(value: Any) -> bytes:
    """Compact JSON as UTF-8; NaN and non-JSON types raise ValueError/TypeError.

    Text that is not valid Unicode (a lone surrogate, as JSON from outside may carry) cannot be
    written as UTF-8, so such a value is written with `\\u` escapes instead: it still round-trips.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def encode_batch(conversation_id: str, records: Sequence[Record]) -> list[EncodedRecord]:
    """Check that each record is a JSON-serialisable mapping with a strictly increasing int `seq`.

    Raises StoreError naming the first bad record; nothing is written by the caller then.
    """
    encoded: list[EncodedRecord] = []
    previous = -1
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            problem = f"record #{index} is a {type(record).__name__}, not a mapping"
            raise StoreError(problem, conversation_id=conversation_id)
        seq = seq_of(record)
        if seq is None:
            raise StoreError(f"record #{index} has no non-negative int seq", conversation_id=conversation_id)
        if seq <= previous:
            problem = f"record {seq} does not follow record {previous} in the batch"
            raise StoreError(problem, conversation_id=conversation_id)
        try:
            data = encode_json(dict(record))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"record {seq} is not JSON-serialisable: {exc}", conversation_id=conversation_id) from exc
        encoded.append(EncodedRecord(seq, data))
        previous = seq
    return encoded


def decode_record(data: bytes | str) -> Record:
    """Parse one stored record; ValueError if it is not a JSON object with a valid `seq`."""
    value = json.loads(data)
    if not isinstance(value, dict) or seq_of(value) is None:
        raise ValueError("not a record: a JSON object with a non-negative int seq")
    return value


def encode_updates(updates: Sequence[Mapping[str, Any]]) -> list[tuple[int, bytes]]:
    """Check every update has an int `update_id` and serialise it; StoreError names a bad one."""
    encoded: list[tuple[int, bytes]] = []
    for index, update in enumerate(updates):
        update_id = update.get("update_id") if isinstance(update, Mapping) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise StoreError(f"update #{index} has no int update_id")
        try:
            encoded.append((update_id, encode_json(dict(update))))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"update {update_id} is not JSON-serialisable: {exc}") from exc
    return encoded
