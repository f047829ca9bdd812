"""The DynamoDB reminder store, in the state table (see stores/_dynamodb_state.py for the keys).

A reminder item holds its unchanging part as JSON in `data`, and what changes as attributes:
`next_due` (N, epoch µs), `state` (S), `last_firing_id` and `confirmed_firing_id` (S). While it needs
the scheduler's attention it is in the sparse index `gsi1` under `due`, sorted by the time it
needs it: its next due time while active, or the due time of its claimed firing until that firing
is confirmed (so the few unconfirmed firings sit among the past entries, found without a scan).
That is how `due`, `next_due` and `unconfirmed` find reminders across all conversations. `advance`
is one `UpdateItem` conditioned on the state and on `next_due`: of workers racing for a firing,
DynamoDB lets exactly one through. `confirm` moves the index entry on to the next due time (or
removes it from a finished reminder).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import structlog

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores._dynamodb_state import INDEX, INDEX_PK, INDEX_SK, SK, StateTable, StateTableUser, key
from stores._dynamodb_table import ConditionFailed, partition_key
from stores._records import encode_json
from stores._reminder_json import reminder_from_json, reminder_to_json
from stores._time import Clock, require_aware, to_micros, utc_now
from stores.base import StoreError
from stores.reminders import (
    LIVE,
    Claim,
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    build_reminder,
    firing_id,
    is_unconfirmed,
    oldest_firing_first,
    soonest_first,
)

__all__ = ["DynamoDBReminderStore"]

log = structlog.get_logger(__name__)

DUE = "due"
"""The index partition of active reminders."""
_MUTABLE = ("next_due", "state", "last_firing_id", "confirmed_firing_id")
_NAMES = {"#state": "state"}
_FREE_ID_ATTEMPTS = 5
_CONFIRM_ATTEMPTS = 3
_PAGE = 25


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
        live = sum(1 for item in existing if item.get("state", {}).get("S") in LIVE)
        if live >= self.max_active_per_conversation:
            raise ReminderLimitReached(new.conversation_id, self.max_active_per_conversation)
        taken = {item[SK]["S"] for item in existing}
        now = self.clock()
        for _ in range(_FREE_ID_ATTEMPTS):
            reminder = build_reminder(new, taken, now)
            if await self.put_new(_item(reminder)):
                return reminder
            taken.add(reminder.id)
        raise StoreError(f"no free reminder id after {_FREE_ID_ATTEMPTS} attempts", conversation_id=new.conversation_id)

    async def get(self, conversation_id: str, reminder_id: str) -> Reminder | None:
        """The reminder (in any state), or None."""
        item = await self.get_item(_partition(conversation_id), reminder_id)
        return _reminder_or_none(item) if item is not None else None

    async def cancel(self, conversation_id: str, reminder_id: str) -> bool:
        """Cancel a live reminder of this conversation; False if there is none with this id."""
        return await self._set_state(conversation_id, reminder_id, LIVE, ReminderState.CANCELLED)

    async def pause(self, conversation_id: str, reminder_id: str) -> bool:
        """Pause an active reminder of this conversation (it leaves the index)."""
        return await self._set_state(conversation_id, reminder_id, {ReminderState.ACTIVE}, ReminderState.PAUSED)

    async def _set_state(
        self, conversation_id: str, reminder_id: str, allowed: Collection[ReminderState], state: ReminderState
    ) -> bool:
        conditions = " OR ".join(f"#state = :from{index}" for index in range(len(allowed)))
        values = {f":from{index}": {"S": item.value} for index, item in enumerate(sorted(allowed))}
        return await self._update_if(
            conversation_id,
            reminder_id,
            f"SET #state = :to REMOVE {INDEX_PK}, {INDEX_SK}",
            conditions,
            {":to": {"S": state.value}, **values},
        )

    async def resume(self, conversation_id: str, reminder_id: str) -> bool:
        """Make a paused reminder active again (back in the index at its next due time)."""
        item = await self.get_item(_partition(conversation_id), reminder_id)
        if item is None or item.get("state", {}).get("S") != ReminderState.PAUSED:
            return False
        return await self._update_if(
            conversation_id,
            reminder_id,
            f"SET #state = :active, {INDEX_PK} = :due, {INDEX_SK} = :key",
            "#state = :paused AND next_due = :next",
            {
                ":active": {"S": ReminderState.ACTIVE.value},
                ":paused": {"S": ReminderState.PAUSED.value},
                ":due": {"S": DUE},
                ":key": {"S": _due_key_of_micros(int(item["next_due"]["N"]))},
                ":next": item["next_due"],
            },
        )

    async def list_for_conversation(self, conversation_id: str) -> list[Reminder]:
        """The conversation's live reminders, soonest first."""
        items = await self.query(
            "#pk = :pk",
            {
                ":pk": {"S": _partition(conversation_id)},
                ":active": {"S": ReminderState.ACTIVE.value},
                ":paused": {"S": ReminderState.PAUSED.value},
            },
            FilterExpression="#state = :active OR #state = :paused",
            ExpressionAttributeNames=_NAMES,
        )
        return soonest_first(_readable(items))

    async def due(self, before: datetime) -> list[Reminder]:
        """Active reminders due at or before `before`, soonest first (read from the index)."""
        limit = require_aware(before, "before")
        # An entry's index time is never later than its reminder's next due time (see the module).
        return soonest_first([item for item in await self._indexed_until(limit) if _due_by(item, limit)])

    async def next_due(self) -> datetime | None:
        """The earliest next due time of the active reminders (read from the index)."""
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "IndexName": INDEX,
            "KeyConditionExpression": "#pk = :due",
            "ExpressionAttributeNames": {"#pk": INDEX_PK},
            "ExpressionAttributeValues": {":due": {"S": DUE}},
            "Limit": _PAGE,
        }
        earliest: datetime | None = None
        while True:
            page = await self.table.call("query", **request)
            for reminder in _readable(page.get("Items", [])):
                if reminder.state is not ReminderState.ACTIVE:
                    continue
                earliest = reminder.next_due if earliest is None else min(earliest, reminder.next_due)
                if reminder.unconfirmed_firing is None:
                    # Indexed at its next due time: every later entry is due later still.
                    return earliest
            start = page.get("LastEvaluatedKey")
            if not start:
                return earliest
            request["ExclusiveStartKey"] = start

    async def unconfirmed(self) -> list[Reminder]:
        """Reminders whose last claimed firing is not confirmed (their index entries are past ones)."""
        found = await self._indexed_until(self.clock())
        return oldest_firing_first([item for item in found if is_unconfirmed(item)])

    async def _indexed_until(self, until: datetime) -> list[Reminder]:
        items = await self.query(
            "#pk = :due AND #sk <= :until", {":due": {"S": DUE}, ":until": {"S": _due_key(until)}}, index=True
        )
        return _readable(items)

    async def _advance(
        self, conversation_id: str, reminder_id: str, expected_due: datetime, new_due: datetime | None
    ) -> bool:
        values: dict[str, Any] = {
            ":active": {"S": ReminderState.ACTIVE.value},
            ":expected": {"N": str(to_micros(expected_due))},
            ":firing": {"S": firing_id(reminder_id, expected_due)},
        }
        # The index entry stays at the claimed firing's time until `confirm`.
        if new_due is None:
            update = "SET #state = :done, last_firing_id = :firing"
            values[":done"] = {"S": ReminderState.DONE.value}
        else:
            update = "SET next_due = :next, last_firing_id = :firing"
            values[":next"] = {"N": str(to_micros(new_due))}
        return await self._update_if(
            conversation_id, reminder_id, update, "#state = :active AND next_due = :expected", values
        )

    async def _advance_many(self, claims: Sequence[Claim]) -> list[bool]:
        """The claims at once, each its own conditional update; claims of one reminder one after
        another, in order, so they are answered as one by one would (the first of two equal ones wins)."""
        by_reminder: dict[tuple[str, str], list[int]] = {}
        for index, claim in enumerate(claims):
            by_reminder.setdefault((claim.conversation_id, claim.reminder_id), []).append(index)
        won = [False] * len(claims)

        async def claim_in_turn(indexes: list[int]) -> None:
            for index in indexes:
                won[index] = await self._advance(*claims[index])

        await asyncio.gather(*(claim_in_turn(indexes) for indexes in by_reminder.values()))
        return won

    async def confirm_many(self, firings: Sequence[tuple[str, str, str]]) -> list[bool]:
        """The confirmations at once, each its own conditional update."""
        return list(await asyncio.gather(*(self.confirm(*firing) for firing in firings)))

    async def confirm(self, conversation_id: str, reminder_id: str, firing: str) -> bool:
        """Confirm the reminder's last claimed firing: its index entry moves to its next due time,
        or leaves the index if it is no longer active."""
        for _ in range(_CONFIRM_ATTEMPTS):
            item = await self.get_item(_partition(conversation_id), reminder_id)
            if item is None or item.get("last_firing_id", {}).get("S") != firing:
                return False
            if item.get("confirmed_firing_id", {}).get("S") == firing:
                return True
            state = item["state"]["S"]
            if state == ReminderState.ACTIVE:
                index = f"SET confirmed_firing_id = :firing, {INDEX_SK} = :key"
                extra = {":key": {"S": _due_key_of_micros(int(item["next_due"]["N"]))}}
            elif state == ReminderState.DONE:
                index, extra = f"SET confirmed_firing_id = :firing REMOVE {INDEX_PK}, {INDEX_SK}", {}
            else:
                index, extra = "SET confirmed_firing_id = :firing", {}
            if await self._update_if(
                conversation_id,
                reminder_id,
                index,
                "last_firing_id = :firing AND #state = :state AND next_due = :next",
                {":firing": {"S": firing}, ":state": {"S": state}, ":next": item["next_due"], **extra},
            ):
                return True
            # Changed since we read it (cancelled, paused): read it again.
        return False

    async def _update_if(
        self, conversation_id: str, reminder_id: str, update: str, condition: str, values: dict[str, Any]
    ) -> bool:
        """One UpdateItem of the reminder under `condition` (`#state` names its state); False if
        the condition failed, and nothing was written."""
        try:
            await self.table.call(
                "update_item",
                TableName=self.table.name,
                Key=key(_partition(conversation_id), reminder_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            return False
        return True


def _due_by(reminder: Reminder, limit: datetime) -> bool:
    return reminder.state is ReminderState.ACTIVE and reminder.next_due <= limit


def _due_key_of_micros(micros: int) -> str:
    return f"{micros:020d}"


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
    confirmed = item.get("confirmed_firing_id", {}).get("S")
    mutable = {"next_due": int(item["next_due"]["N"]), "state": item["state"]["S"], "last_firing_id": last}
    return reminder_from_json({**data, **mutable, "confirmed_firing_id": confirmed})


def _reminder_or_none(item: dict[str, Any]) -> Reminder | None:
    try:
        return _reminder_of(item)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("reminder_item_unreadable", reminder_id=item.get(SK, {}).get("S"), error=str(exc))
        return None


def _readable(items: list[dict[str, Any]]) -> list[Reminder]:
    return [reminder for item in items if (reminder := _reminder_or_none(item)) is not None]
