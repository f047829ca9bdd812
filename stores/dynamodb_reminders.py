"""The DynamoDB reminder store, in the state table (see stores/_dynamodb_state.py for the keys).

A reminder item holds its unchanging part as JSON in `data`, and what changes as attributes:
`next_due` (N, epoch µs), `state` (S), `last_firing` (S). While active it is in the sparse index
`gsi1` under `due`, sorted by next due time, which is how `due` and `next_due` find reminders
across all conversations without a scan. `advance` is one `UpdateItem` conditioned on the state
and on `next_due`: of workers racing for a firing, DynamoDB lets exactly one through.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import structlog

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores._dynamodb_state import INDEX_PK, INDEX_SK, PK, SK, StateTable, StateTableUser, key
from stores._dynamodb_table import ConditionFailed, partition_key
from stores._records import encode_json
from stores._time import Clock, to_micros, utc_now
from stores.base import StoreError
from stores.reminders import (
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    build_reminder,
    firing_id,
    reminder_from_json,
    reminder_to_json,
    soonest_first,
)

__all__ = ["DynamoDBReminderStore"]

log = structlog.get_logger(__name__)

DUE = "due"
"""The index partition of active reminders."""
_MUTABLE = ("next_due", "state", "last_firing_id")
_NAMES = {"#state": "state"}
_FREE_ID_ATTEMPTS = 5


def _partition(conversation_id: str) -> str:
    return "rem#" + partition_key(conversation_id)


def _due_key(due: datetime) -> str:
    # Zero-padded so that the index's string order is time order.
    return f"{to_micros(due):020d}"


class DynamoDBReminderStore(StateTableUser, ReminderStore):
    """Reminders as items of the state table, one partition per conversation.

    The per-conversation limit is checked by reading the partition before the put: two creates
    racing in one conversation could pass it together, which cannot happen while a conversation's
    turns run one at a time (as they do, also across workers).
    """

    def __init__(
        self,
        settings: DynamoDBSettings,
        backoff: Backoff | None = None,
        *,
        table: StateTable | None = None,
        clock: Clock = utc_now,
        max_active_per_conversation: int = 100,
    ) -> None:
        StateTableUser.__init__(self, settings, backoff, table=table)
        ReminderStore.__init__(self, clock=clock, max_active_per_conversation=max_active_per_conversation)

    async def _create(self, new: NewReminder) -> Reminder:
        partition = _partition(new.conversation_id)
        existing = await self.query(
            "#pk = :pk",
            {":pk": {"S": partition}},
            ProjectionExpression="#sk, #state",
            ExpressionAttributeNames={"#sk": SK, **_NAMES},
        )
        active = sum(1 for item in existing if item.get("state", {}).get("S") == ReminderState.ACTIVE)
        if active >= self.max_active_per_conversation:
            raise ReminderLimitReached(new.conversation_id, self.max_active_per_conversation)
        taken = {item[SK]["S"] for item in existing}
        now = self.clock()
        for _ in range(_FREE_ID_ATTEMPTS):
            reminder = build_reminder(new, taken, now)
            try:
                await self.table.call(
                    "put_item",
                    TableName=self.table.name,
                    Item=_item(reminder),
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": PK},
                )
            except ConditionFailed:
                taken.add(reminder.id)
                continue
            return reminder
        raise StoreError(f"no free reminder id after {_FREE_ID_ATTEMPTS} attempts", conversation_id=new.conversation_id)

    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder (in any state), or None."""
        item = await self.get_item(_partition(conversation_id), reminder_id)
        return _reminder_or_none(item) if item is not None else None

    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel an active reminder of this conversation; False if there is none with this id."""
        try:
            await self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=key(_partition(conversation_id), reminder_id),
                UpdateExpression=f"SET #state = :cancelled REMOVE {INDEX_PK}, {INDEX_SK}",
                ConditionExpression="#state = :active",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={
                    ":cancelled": {"S": ReminderState.CANCELLED.value},
                    ":active": {"S": ReminderState.ACTIVE.value},
                },
            )
        except ConditionFailed:
            return False
        return True

    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's active reminders, soonest first."""
        items = await self.query(
            "#pk = :pk",
            {":pk": {"S": _partition(conversation_id)}, ":active": {"S": ReminderState.ACTIVE.value}},
            FilterExpression="#state = :active",
            ExpressionAttributeNames=_NAMES,
        )
        return soonest_first(_readable(items))

    async def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first (read from the index)."""
        items = await self.query(
            "#pk = :due AND #sk <= :before", {":due": {"S": DUE}, ":before": {"S": _due_key(before)}}, index=True
        )
        return soonest_first(_readable(items))

    async def next_due(self) -> datetime | None:
        """The earliest next due time of the active reminders (read from the index)."""
        items = await self.query("#pk = :due", {":due": {"S": DUE}}, index=True, Limit=1)
        reminders = _readable(items)
        return reminders[0].next_due if reminders else None

    async def _advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        values: dict[str, Any] = {
            ":active": {"S": ReminderState.ACTIVE.value},
            ":expected": {"N": str(to_micros(expected_due))},
            ":firing": {"S": firing_id(reminder_id, expected_due)},
        }
        if new_due is None:
            update = f"SET #state = :done, last_firing_id = :firing REMOVE {INDEX_PK}, {INDEX_SK}"
            values[":done"] = {"S": ReminderState.DONE.value}
        else:
            update = f"SET next_due = :next, {INDEX_SK} = :next_key, last_firing_id = :firing"
            values[":next"] = {"N": str(to_micros(new_due))}
            values[":next_key"] = {"S": _due_key(new_due)}
        try:
            await self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=key(_partition(conversation_id), reminder_id),
                UpdateExpression=update,
                ConditionExpression="#state = :active AND next_due = :expected",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            return False
        return True


def _item(reminder: Reminder) -> dict[str, Any]:
    data = {name: value for name, value in reminder_to_json(reminder).items() if name not in _MUTABLE}
    item: dict[str, Any] = {
        **key(_partition(reminder.conversation_id), reminder.id),
        "data": {"S": encode_json(data).decode("utf-8")},
        "next_due": {"N": str(to_micros(reminder.next_due))},
        "state": {"S": reminder.state.value},
    }
    if reminder.state is ReminderState.ACTIVE:
        item[INDEX_PK] = {"S": DUE}
        item[INDEX_SK] = {"S": _due_key(reminder.next_due)}
    return item


def _reminder_of(item: dict[str, Any]) -> Reminder:
    data = json.loads(item["data"]["S"])
    if not isinstance(data, dict):
        raise TypeError("data is not an object")
    last = item.get("last_firing_id", {}).get("S")
    return reminder_from_json(
        {**data, "next_due": int(item["next_due"]["N"]), "state": item["state"]["S"], "last_firing_id": last}
    )


def _reminder_or_none(item: dict[str, Any]) -> Reminder | None:
    try:
        return _reminder_of(item)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("reminder_item_unreadable", reminder_id=item.get(SK, {}).get("S"), error=str(exc))
        return None


def _readable(items: list[dict[str, Any]]) -> list[Reminder]:
    return [reminder for item in items if (reminder := _reminder_or_none(item)) is not None]
