"""DynamoDB backends of the facts, usage and preference stores, in the state table.

See stores/_dynamodb_state.py for the keys. A fact item holds its unchanging part as JSON in
`data` and its use in `last_used` (N, epoch µs) and `uses` (N); a usage item holds one counter
per attribute, grown with `ADD` in one `UpdateItem`, so concurrent workers never lose a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from typing import Any

import structlog

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores._dynamodb_state import PK, SK, StateTable, StateTableUser, key
from stores._dynamodb_table import ConditionFailed, partition_key
from stores._records import encode_json
from stores._time import Clock, to_micros, utc_now
from stores.base import StoreError
from stores.facts import AddedFact, Fact, FactLimits, FactSource, FactStore, fact_from_json, plan_add
from stores.usage import PreferenceStore, Usage, UsageStore, sum_by_user, sum_days

__all__ = ["DynamoDBFactStore", "DynamoDBPreferenceStore", "DynamoDBUsageStore"]

log = structlog.get_logger(__name__)

_FREE_ID_ATTEMPTS = 5
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_micros")


def _fact_partition(user_id: int) -> str:
    return f"fact#{user_id}"


class DynamoDBFactStore(StateTableUser, FactStore):
    """Facts as items of the state table, one partition per user.

    `add` puts the new fact (conditionally, so an id is never reused), then deletes what the
    bound drops: a crash in between leaves the user over the bound until the next `add`.
    """

    def __init__(
        self,
        settings: DynamoDBSettings,
        backoff: Backoff | None = None,
        *,
        table: StateTable | None = None,
        clock: Clock = utc_now,
        limits: FactLimits | None = None,
    ) -> None:
        StateTableUser.__init__(self, settings, backoff, table=table)
        FactStore.__init__(self, clock=clock, limits=limits)

    async def _add(self, user_id: int, text: str, source: FactSource) -> AddedFact:
        now = self.clock()
        for _ in range(_FREE_ID_ATTEMPTS):
            added = plan_add(await self._load(user_id), user_id, text, source, now, self.limits)
            if not await self.put_new(_fact_item(added.fact)):
                continue  # another worker took this id meanwhile: read again, pick another
            partition = _fact_partition(user_id)
            await self.delete_keys([key(partition, fact.id) for fact in added.dropped])
            return added
        raise StoreError(f"no free fact id after {_FREE_ID_ATTEMPTS} attempts")

    async def _load(self, user_id: int) -> list[Fact]:
        items = await self.query("#pk = :pk", {":pk": {"S": _fact_partition(user_id)}})
        facts = []
        for item in items:
            try:
                facts.append(_fact_of(user_id, item))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("fact_item_unreadable", user_id=user_id, fact_id=item.get(SK, {}).get("S"), error=str(exc))
        return facts

    async def _delete(self, user_id: int, fact_id: str) -> bool:
        reply = await self.table.call(
            "delete_item", TableName=self.table.name, Key=key(_fact_partition(user_id), fact_id), ReturnValues="ALL_OLD"
        )
        return bool(reply.get("Attributes"))

    async def _delete_all(self, user_id: int) -> int:
        keys = await self.query(
            "#pk = :pk",
            {":pk": {"S": _fact_partition(user_id)}},
            ProjectionExpression="#pk, #sk",
            ExpressionAttributeNames={"#sk": SK},
        )
        await self.delete_keys(keys)
        return len(keys)

    async def _touch(self, user_id: int, fact_ids: frozenset[str], now: datetime) -> None:
        async with asyncio.TaskGroup() as group:
            for fact_id in sorted(fact_ids):
                group.create_task(self._touch_one(user_id, fact_id, now), name=f"fact-touch-{fact_id}")

    async def _touch_one(self, user_id: int, fact_id: str, now: datetime) -> None:
        # An unknown (or meanwhile deleted) id fails the condition: there is nothing to mark.
        with contextlib.suppress(ConditionFailed):
            await self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=key(_fact_partition(user_id), fact_id),
                UpdateExpression="SET last_used = :at ADD uses :one",
                ConditionExpression="attribute_exists(#pk)",  # never recreate a deleted fact
                ExpressionAttributeNames={"#pk": PK},
                ExpressionAttributeValues={":at": {"N": str(to_micros(now))}, ":one": {"N": "1"}},
            )


def _fact_item(fact: Fact) -> dict[str, Any]:
    data = {
        "text": fact.text,
        "created": to_micros(fact.created_at),
        "conversation_id": fact.source.conversation_id,
        "message_id": fact.source.message_id,
    }
    return {
        **key(_fact_partition(fact.user_id), fact.id),
        "data": {"S": encode_json(data).decode("utf-8")},
        "uses": {"N": str(fact.use_count)},
    }


def _fact_of(user_id: int, item: dict[str, Any]) -> Fact:
    data = json.loads(item["data"]["S"])
    if not isinstance(data, dict):
        raise TypeError("data is not an object")
    last_used = item.get("last_used", {}).get("N")
    return fact_from_json(
        {
            **data,
            "user_id": user_id,
            "id": item[SK]["S"],
            "last_used": int(last_used) if last_used is not None else None,
            "uses": int(item.get("uses", {}).get("N", "0")),
        }
    )


class DynamoDBUsageStore(StateTableUser, UsageStore):
    """Usage as one item per user and day; `add` is one atomic `UpdateItem` with `ADD`.

    A request that times out after DynamoDB applied it is retried and counted twice: counters
    may overstate, never lose, what a timed-out call used.
    """

    async def _add(self, user_id: int, day: str, usage: Usage) -> None:
        values = {f":{name}": {"N": str(getattr(usage, name))} for name in _USAGE_FIELDS}
        await self.table.call(
            "update_item",
            TableName=self.table.name,
            Key=key(f"usage#{user_id}", day),
            UpdateExpression="SET gsi1pk = :month, gsi1sk = :user_day, user_id = :user ADD "
            + ", ".join(f"{name} :{name}" for name in _USAGE_FIELDS),
            ExpressionAttributeValues={
                **values,
                ":month": {"S": f"usage-month#{day[:7]}"},
                ":user_day": {"S": f"{user_id}#{day}"},
                ":user": {"N": str(user_id)},
            },
        )

    async def _day(self, user_id: int, day: str) -> Usage:
        item = await self.get_item(f"usage#{user_id}", day)
        return _usage_of(item) if item is not None else Usage()

    async def _month(self, user_id: int, month: str) -> Usage:
        items = await self.query(
            "#pk = :pk AND begins_with(#sk, :month)", {":pk": {"S": f"usage#{user_id}"}, ":month": {"S": month + "-"}}
        )
        return sum_days(map(_usage_of, items))

    async def _all_users_month(self, month: str) -> dict[int, Usage]:
        items = await self.query("#pk = :pk", {":pk": {"S": f"usage-month#{month}"}}, index=True)
        return sum_by_user((int(item["user_id"]["N"]), _usage_of(item)) for item in items)


def _usage_of(item: dict[str, Any]) -> Usage:
    return Usage(**{name: int(item.get(name, {}).get("N", "0")) for name in _USAGE_FIELDS})


class DynamoDBPreferenceStore(StateTableUser, PreferenceStore):
    """Preferences as one item each (`value`); unsetting deletes the item."""

    async def model(self, conversation_id: str) -> str | None:
        """The model chosen for the conversation, or None."""
        return await self._get("pref#model#" + partition_key(conversation_id))

    async def set_model(self, conversation_id: str, model: str | None) -> None:
        """Choose the conversation's model (None: back to the default)."""
        await self._set("pref#model#" + partition_key(conversation_id), model)

    async def timezone(self, user_id: int) -> str | None:
        """The user's IANA time zone, or None."""
        return await self._get(f"pref#timezone#{user_id}")

    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        """Set the user's time zone (None: back to the default)."""
        await self._set(f"pref#timezone#{user_id}", timezone)

    async def _get(self, pk: str) -> str | None:
        item = await self.get_item(pk, "-")
        return str(item["value"]["S"]) if item is not None and "value" in item else None

    async def _set(self, pk: str, value: str | None) -> None:
        if value is None:
            await self.table.call("delete_item", TableName=self.table.name, Key=key(pk, "-"))
        else:
            await self.table.call("put_item", TableName=self.table.name, Item={**key(pk, "-"), "value": {"S": value}})
