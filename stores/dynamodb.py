"""The DynamoDB conversation store and ingress log (aiobotocore); see docs/dynamodb.md.

One table, partition key `conversation_id` (S), sort key `seq` (N):

- a record is the item (`c#<id>` or `h#<sha256>`, seq); small records are JSON in `record` (S),
  larger ones zlib-compressed in `zrecord` (B). A record still too big for one item is split:
  the head item (at `seq`) holds the first chunk and `parts`, the other chunks sit at
  `seq.000001`, `seq.000002`, ... so that one Query returns them in order right after their head.
  Chunks are written before the head, and only the head is what makes a record exist, so a crash
  half-way leaves no half record (stray chunks are ignored on load and overwritten by the retry).
- the ingress log is the partition `ingress`, sort key `update_id`, the update as JSON in `update`.

Every record item is written with `PutItem` conditioned on `attribute_not_exists`: a second writer
gets ConflictError, and history is never overwritten. A batch of records is written in order and
stops at the first failure (records before it stay written).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores._dynamodb_recent import NewestFirst
from stores._dynamodb_table import (
    INGRESS_PARTITION,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    ConditionFailed,
    DynamoDBTable,
    TableUser,
    partition_key,
)
from stores._records import EncodedRecord, decode_record, encode_batch, encode_updates
from stores.base import ConflictError, ConversationStore, IngressLog, Record, StoreError

__all__ = ["DynamoDBConversationStore", "DynamoDBIngressLog", "DynamoDBTable"]

log = structlog.get_logger(__name__)

COMPRESS_ABOVE = 16 * 1024
"""JSON longer than this is stored compressed: write capacity is billed per KB."""
CHUNK_BYTES = 350_000
"""Largest stored payload per item: under the 400 KB item limit with room for keys and names."""
_PART_SCALE = 1_000_000  # chunk k of record n sits at sort key n + k / _PART_SCALE

_RECENT_PAGE = 200  # items per page of a newest-first read: most activations need one page
_NAMES = {"#pk": PARTITION_KEY, "#sk": SORT_KEY}
_NOT_THERE = "attribute_not_exists(#pk)"


class _TableUser(TableUser):
    """Opens and closes a shared DynamoDBTable (its own one unless given)."""

    def __init__(
        self,
        settings: DynamoDBSettings,
        backoff: Backoff | None = None,
        *,
        table: DynamoDBTable | None = None,
    ) -> None:
        super().__init__(table if table is not None else DynamoDBTable(settings, backoff))

    def _with_ttl(self, item: dict[str, Any]) -> dict[str, Any]:
        expires_at = self.table.expires_at()
        if expires_at is not None:
            item[TTL_ATTRIBUTE] = {"N": str(expires_at)}
        return item

    async def _query(self, partition: str, **extra: Any) -> list[dict[str, Any]]:
        """Every item of the partition in sort-key order, following Query's pagination."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ConsistentRead": True,
            **extra,
        }
        if self.table.page_size:
            request["Limit"] = self.table.page_size
        return await self.table.query_items(request)

    async def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """BatchWriteItem in groups of 25, resubmitting unprocessed items with backoff."""
        await self.table.batch_write(requests, "batch items")


class DynamoDBConversationStore(_TableUser, ConversationStore):
    """Histories in a DynamoDB table, one item per record.

    `table` lets the store share one client with the ingress log (see `stores.build_stores`);
    without it the store opens its own from `settings` and `backoff`.
    """

    async def load(self, conversation_id: str) -> list[Record]:
        """Every readable record in seq order; an unreadable item is logged and skipped."""
        with _about(conversation_id):
            items = await self._query(partition_key(conversation_id))
        return _assemble(conversation_id, items)

    async def load_recent(self, conversation_id: str, stop_at: Callable[[Record], bool]) -> list[Record]:
        """The newest records: a Query in descending `seq`, page by page (each page parsed in a worker
        thread) until `stop_at` accepts a record; no later page is read."""
        reader = NewestFirst(conversation_id, stop_at)
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
            "ExpressionAttributeValues": {":pk": {"S": partition_key(conversation_id)}},
            "ConsistentRead": True,
            "ScanIndexForward": False,
            "Limit": self.table.page_size or _RECENT_PAGE,
        }
        with _about(conversation_id):
            while True:
                page = await self.table.call("query", **request)
                if await asyncio.to_thread(reader.feed, page.get("Items", [])):
                    break
                last_key = page.get("LastEvaluatedKey")
                if not last_key:
                    break
                request["ExclusiveStartKey"] = last_key
        return reader.records()

    async def last_seq(self, conversation_id: str) -> int | None:
        """One consistent Query of one key, newest first (a chunk's key names its record's seq)."""
        with _about(conversation_id):
            page = await self.table.call(
                "query",
                TableName=self.table.name,
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":pk": {"S": partition_key(conversation_id)}},
                ProjectionExpression="#pk, #sk",
                ConsistentRead=True,
                ScanIndexForward=False,
                Limit=1,
            )
        items = page.get("Items", [])
        return int(Decimal(items[0][SORT_KEY]["N"])) if items else None

    async def append(self, conversation_id: str, records: Sequence[Record]) -> None:
        """Put each record (conditionally) in order; ConflictError at the first seq already taken."""
        partition = partition_key(conversation_id)
        with _about(conversation_id):
            for item in encode_batch(conversation_id, records):
                await self._put_record(conversation_id, partition, item)

    async def delete(self, conversation_id: str) -> None:
        """Delete every item of the conversation (records and chunks)."""
        with _about(conversation_id):
            keys = await self._query(
                partition_key(conversation_id), ProjectionExpression="#pk, #sk", ExpressionAttributeNames=_NAMES
            )
            await self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])

    async def _put_record(self, conversation_id: str, partition: str, record: EncodedRecord) -> None:
        head: dict[str, Any] = {PARTITION_KEY: {"S": partition}, SORT_KEY: {"N": str(record.seq)}}
        if len(record.data) <= COMPRESS_ABOVE:
            head["record"] = {"S": record.data.decode("utf-8")}
        else:
            packed = zlib.compress(record.data, 6)
            chunks = [packed[start : start + CHUNK_BYTES] for start in range(0, len(packed), CHUNK_BYTES)]
            for index, chunk in enumerate(chunks[1:], start=1):
                await self._put_chunk(conversation_id, partition, record.seq, index, chunk)
            head["zrecord"] = {"B": chunks[0]}
            if len(chunks) > 1:
                head["parts"] = {"N": str(len(chunks))}
        try:
            await self._put(self._with_ttl(head), conditional=True)
        except ConditionFailed as exc:
            raise ConflictError(conversation_id, record.seq) from exc

    async def _put_chunk(self, conversation_id: str, partition: str, seq: int, index: int, chunk: bytes) -> None:
        item = self._with_ttl(
            {
                PARTITION_KEY: {"S": partition},
                SORT_KEY: {"N": f"{seq}.{index:06d}"},
                "part": {"N": str(index)},
                "zrecord": {"B": chunk},
            }
        )
        try:
            await self._put(item, conditional=True)
        except ConditionFailed:
            # Either the record exists (a conflict) or this is a stray chunk of an append that
            # crashed before writing its head: that one is ours to overwrite.
            if await self._head_exists(partition, seq):
                raise ConflictError(conversation_id, seq) from None
            await self._put(item, conditional=False)

    async def _head_exists(self, partition: str, seq: int) -> bool:
        reply = await self.table.call(
            "query",
            TableName=self.table.name,
            KeyConditionExpression="#pk = :pk AND #sk = :sk",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={":pk": {"S": partition}, ":sk": {"N": str(seq)}},
            ConsistentRead=True,
        )
        return bool(reply.get("Items"))

    async def _put(self, item: dict[str, Any], *, conditional: bool) -> None:
        condition: dict[str, Any] = (
            {"ConditionExpression": _NOT_THERE, "ExpressionAttributeNames": {"#pk": PARTITION_KEY}}
            if conditional
            else {}
        )
        await self.table.call("put_item", TableName=self.table.name, Item=item, **condition)


class DynamoDBIngressLog(_TableUser, IngressLog):
    """The ingress log as the `ingress` partition of the store's table."""

    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        """Put the updates (BatchWriteItem); one already held is overwritten by an equal copy."""
        unique: dict[int, bytes] = {}
        for update_id, data in encode_updates(updates):
            unique.setdefault(update_id, data)
        requests = []
        for update_id, data in unique.items():
            item: dict[str, Any] = {PARTITION_KEY: {"S": INGRESS_PARTITION}, SORT_KEY: {"N": str(update_id)}}
            if len(data) <= COMPRESS_ABOVE:
                item["update"] = {"S": data.decode("utf-8")}
            else:
                packed = zlib.compress(data, 6)
                if len(packed) > CHUNK_BYTES:
                    raise StoreError(f"update {update_id} is too large for the ingress log ({len(data)} bytes)")
                item["zupdate"] = {"B": packed}
            requests.append({"PutRequest": {"Item": self._with_ttl(item)}})
        await self._batch_write(requests)

    async def done(self, update_id: int) -> None:
        """Delete the update's item; an unknown id is not an error."""
        await self.table.call(
            "delete_item",
            TableName=self.table.name,
            Key={PARTITION_KEY: {"S": INGRESS_PARTITION}, SORT_KEY: {"N": str(update_id)}},
        )

    async def pending(self) -> list[dict[str, Any]]:
        """Held updates in `update_id` order (the sort key's order); unreadable ones are logged."""
        updates: list[dict[str, Any]] = []
        for item in await self._query(INGRESS_PARTITION):
            try:
                if "zupdate" in item:
                    text: bytes | str = zlib.decompress(item["zupdate"]["B"])
                else:
                    text = item["update"]["S"]
                value = _decode_update(text)
            except (KeyError, ValueError, zlib.error):
                log.error("ingress_item_unreadable", update_id=item.get(SORT_KEY, {}).get("N"))
                continue
            updates.append(value)
        return updates


@contextmanager
def _about(conversation_id: str) -> Iterator[None]:
    """Name the conversation on a StoreError raised by the shared table code."""
    try:
        yield
    except StoreError as exc:
        if exc.conversation_id is None:
            exc.conversation_id = conversation_id
        raise


def _decode_update(text: bytes | str) -> dict[str, Any]:
    """Parse a stored update; ValueError unless it is an object with an int `update_id`."""
    value = json.loads(text)
    if not isinstance(value, dict) or not isinstance(value.get("update_id"), int):
        raise ValueError("not an update")
    return value


@dataclass(slots=True)
class _SplitRecord:
    """A split record's head seen on load, collecting its chunks."""

    seq: int
    parts: int
    chunks: list[bytes]


def _assemble(conversation_id: str, items: list[dict[str, Any]]) -> list[Record]:
    """Turn a partition's items (in sort-key order) back into records, skipping what is unreadable."""
    records: list[Record] = []
    split: _SplitRecord | None = None
    for item in items:
        key = Decimal(item[SORT_KEY]["N"])
        seq = int(key)
        if key != seq:
            index = int((key - seq) * _PART_SCALE)
            if split is not None and split.seq == seq and index == len(split.chunks) and "zrecord" in item:
                split.chunks.append(item["zrecord"]["B"])
            else:
                log.debug("store_stray_chunk_skipped", conversation_id=conversation_id, seq=seq, part=index)
            continue
        if split is not None:
            _add_split(records, conversation_id, split)
            split = None
        if "parts" in item and "zrecord" in item:
            split = _SplitRecord(seq, int(item["parts"]["N"]), [item["zrecord"]["B"]])
        else:
            packed = item.get("zrecord", {}).get("B")
            _add(records, conversation_id, seq, packed=packed, text=item.get("record", {}).get("S"))
    if split is not None:
        _add_split(records, conversation_id, split)
    return records


def _add_split(records: list[Record], conversation_id: str, split: _SplitRecord) -> None:
    if len(split.chunks) != split.parts:
        log.error("store_record_incomplete", conversation_id=conversation_id, seq=split.seq, parts=split.parts)
        return
    _add(records, conversation_id, split.seq, packed=b"".join(split.chunks), text=None)


def _add(records: list[Record], conversation_id: str, seq: int, *, packed: bytes | None, text: str | None) -> None:
    """Decode one stored payload and append it, or log it as unreadable."""
    try:
        data = zlib.decompress(packed) if packed is not None else text
        if data is None:
            raise ValueError("no payload")
        record = decode_record(data)
    except (ValueError, zlib.error):
        log.error("store_record_unreadable", conversation_id=conversation_id, seq=seq)
        return
    if record["seq"] != seq:
        log.error("store_record_unreadable", conversation_id=conversation_id, seq=seq, stored_seq=record["seq"])
        return
    records.append(record)
