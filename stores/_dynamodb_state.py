"""The DynamoDB state table: facts, reminders, usage and preferences in one table (see docs/dynamodb.md).

Single-table layout: partition key `pk` (S), sort key `sk` (S), and one global secondary index
`gsi1` (`gsi1pk` S, `gsi1sk` S, all attributes projected) for the two questions that cross
partitions: which reminders are due, and every user's usage of a month. Each kind of item has its
own `pk` prefix, so no two kinds can meet:

- fact: pk `fact#<user id>`, sk the fact id.
- reminder: pk `rem#` + the conversation's partition (`c#<id>`, or `h#<sha256>` for an id too long
  or not valid Unicode), sk the reminder id; while active, gsi1pk `due` and gsi1sk its next due
  time as 20-digit epoch microseconds.
- usage: pk `usage#<user id>`, sk `YYYY-MM-DD`; gsi1pk `usage-month#YYYY-MM`, gsi1sk `<user id>#<day>`.
- preference: pk `pref#model#` + the conversation's partition, or `pref#timezone#<user id>`; sk `-`.

The table shares the retry policy and client handling of `DynamoDBTable`; it has no TTL: nothing
in it may expire on its own.
"""

from __future__ import annotations

from typing import Any

import structlog

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores._dynamodb_table import DynamoDBTable, _caused_by
from stores.base import StoreError

__all__ = ["INDEX", "INDEX_PK", "INDEX_SK", "PK", "SK", "StateTable", "StateTableUser"]

log = structlog.get_logger(__name__)

PK, SK = "pk", "sk"
INDEX, INDEX_PK, INDEX_SK = "gsi1", "gsi1pk", "gsi1sk"


class StateTable(DynamoDBTable):
    """`settings.state_table_name`, through one client shared by the stores that use it."""

    def __init__(self, settings: DynamoDBSettings, backoff: Backoff | None = None, **options: Any) -> None:
        super().__init__(settings, backoff, **options)
        self.name = settings.state_table_name

    async def _check_table(self) -> None:
        table = (await self.call("describe_table", TableName=self.name))["Table"]
        keys = {(key["AttributeName"], key["KeyType"]) for key in table["KeySchema"]}
        types = {item["AttributeName"]: item["AttributeType"] for item in table["AttributeDefinitions"]}
        indexes = {
            index["IndexName"]: {(key["AttributeName"], key["KeyType"]) for key in index["KeySchema"]}
            for index in table.get("GlobalSecondaryIndexes", [])
        }
        if (
            keys != {(PK, "HASH"), (SK, "RANGE")}
            or indexes.get(INDEX) != {(INDEX_PK, "HASH"), (INDEX_SK, "RANGE")}
            or any(types.get(name) != "S" for name in (PK, SK, INDEX_PK, INDEX_SK))
        ):
            raise StoreError(
                f"the DynamoDB table {self.name!r} must have keys {PK} (S) and {SK} (S) and an index "
                f"{INDEX} on {INDEX_PK} (S) and {INDEX_SK} (S); see docs/dynamodb.md"
            )

    async def _create_table(self) -> None:
        try:
            await self.call(
                "create_table",
                TableName=self.name,
                KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": "S"} for name in (PK, SK, INDEX_PK, INDEX_SK)
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": INDEX,
                        "KeySchema": [
                            {"AttributeName": INDEX_PK, "KeyType": "HASH"},
                            {"AttributeName": INDEX_SK, "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            log.info("dynamodb_table_created", table=self.name)
        except StoreError as exc:
            if not _caused_by(exc, "ResourceInUseException"):
                raise
        await self._wait_until_active()
        await self._check_table()


def key(pk: str, sk: str) -> dict[str, Any]:
    """The item key of `pk` and `sk`."""
    return {PK: {"S": pk}, SK: {"S": sk}}


class StateTableUser:
    """Opens and closes a shared StateTable (its own one unless given), and queries it."""

    def __init__(
        self, settings: DynamoDBSettings, backoff: Backoff | None = None, *, table: StateTable | None = None
    ) -> None:
        self.table = table if table is not None else StateTable(settings, backoff)
        self._acquired = False

    async def open(self) -> None:
        """Open the client and create or check the table (StoreError if that fails)."""
        if not self._acquired:
            await self.table.acquire()
            self._acquired = True

    async def close(self) -> None:
        """Release the client. Safe to call twice."""
        if self._acquired:
            self._acquired = False
            await self.table.release()

    async def query(self, condition: str, values: dict[str, Any], *, index: bool = False, **extra: Any) -> list[Any]:
        """Every item matching the key `condition` (`#pk`/`#sk` name the keys), following pages.

        On the table the read is strongly consistent; on the index it cannot be (an index lags
        its table by a moment), which is why a reminder found there is claimed conditionally.
        """
        names = {"#pk": INDEX_PK, "#sk": INDEX_SK} if index else {"#pk": PK, "#sk": SK}
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            **extra,
        }
        used = {name: value for name, value in names.items() if name in condition}
        used |= extra.get("ExpressionAttributeNames", {})
        if used:
            request["ExpressionAttributeNames"] = used
        if index:
            request["IndexName"] = INDEX
        else:
            request["ConsistentRead"] = True
        if self.table.page_size and "Limit" not in request:
            request["Limit"] = self.table.page_size
        items: list[Any] = []
        while True:
            page = await self.table.call("query", **request)
            items.extend(page.get("Items", []))
            last_key = page.get("LastEvaluatedKey")
            if not last_key or "Limit" in extra:
                return items
            request["ExclusiveStartKey"] = last_key

    async def get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        """The item, read consistently, or None."""
        reply = await self.table.call("get_item", TableName=self.table.name, Key=key(pk, sk), ConsistentRead=True)
        item: dict[str, Any] | None = reply.get("Item")
        return item

    async def delete_keys(self, keys: list[dict[str, Any]]) -> None:
        """Delete the items (BatchWriteItem in groups of 25, resubmitting what DynamoDB left)."""
        for start in range(0, len(keys), 25):
            pending = [{"DeleteRequest": {"Key": item}} for item in keys[start : start + 25]]
            for attempt in range(1, 11):
                reply = await self.table.call("batch_write_item", RequestItems={self.table.name: pending})
                pending = reply.get("UnprocessedItems", {}).get(self.table.name, [])
                if not pending:
                    break
                await self.table.sleep_before_retry(attempt)
            else:
                raise StoreError(f"DynamoDB left {len(pending)} deletions unprocessed after 10 attempts")
