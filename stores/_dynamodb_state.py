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

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores._dynamodb_table import ConditionFailed, DynamoDBTable, TableUser
from stores.base import StoreError

__all__ = ["INDEX", "INDEX_PK", "INDEX_SK", "PK", "SK", "StateTable", "StateTableUser"]

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
        await self._create_and_check(
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
        )


def key(pk: str, sk: str) -> dict[str, Any]:
    """The item key of `pk` and `sk`."""
    return {PK: {"S": pk}, SK: {"S": sk}}


class StateTableUser(TableUser):
    """Opens and closes a shared StateTable (its own one unless given), and queries it."""

    def __init__(
        self, settings: DynamoDBSettings, backoff: Backoff | None = None, *, table: StateTable | None = None
    ) -> None:
        super().__init__(table if table is not None else StateTable(settings, backoff))

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
        return await self.table.query_items(request, first_page_only="Limit" in extra)

    async def get_item(self, pk: str, sk: str) -> dict[str, Any] | None:
        """The item, read consistently, or None."""
        reply = await self.table.call("get_item", TableName=self.table.name, Key=key(pk, sk), ConsistentRead=True)
        item: dict[str, Any] | None = reply.get("Item")
        return item

    async def put_new(self, item: dict[str, Any]) -> bool:
        """Put the item unless one with its key is there already (then False, and nothing is written)."""
        try:
            await self.table.call(
                "put_item",
                TableName=self.table.name,
                Item=item,
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PK},
            )
        except ConditionFailed:
            return False
        return True

    async def delete_keys(self, keys: list[dict[str, Any]]) -> None:
        """Delete the items (BatchWriteItem in groups of 25, resubmitting what DynamoDB left)."""
        await self.table.batch_write([{"DeleteRequest": {"Key": item}} for item in keys], "deletions")
