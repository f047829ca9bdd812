"""The ingress log as an SQS FIFO queue (aiobotocore): gateways append, workers receive and delete.

`append` sends each update with `MessageGroupId` = its conversation id and `MessageDeduplicationId`
= its update id, so SQS keeps one conversation's updates in order and in one worker's hands at a
time, and drops a second copy of an update sent within its five-minute deduplication window (a
Telegram retry, a re-poll after a crash). Nothing here locks: FIFO groups are the serialisation.

A worker `receive`s (a long poll), holding each message's receipt until `done` deletes it; while it
holds messages, `extend_held` (called every third of the visibility timeout by the worker) keeps
them hidden from the other workers. A worker that dies stops extending, so its messages reappear
after the visibility timeout at another worker. `release` (at a clean stop) makes what is still
held visible at once. `pending` is empty: the queue, not this process, holds what is not done.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import botocore.exceptions
import structlog
from aiobotocore.session import get_session
from botocore.config import Config
from tenacity import retry_if_exception

from conf import QueueSettings
from ops.backoff import Backoff
from stores._dynamodb_table import _LOADER, _is_transient
from stores._records import encode_updates
from stores.base import IngressLog, StoreError

__all__ = ["GroupOf", "QueueCalls", "SqsIngressLog"]

log = structlog.get_logger(__name__)

GroupOf = Callable[[Mapping[str, Any]], str]
"""The conversation id of a raw update (its FIFO message group)."""

_BATCH = 10  # SQS's most entries per batch call
_BATCH_BYTES = 200_000  # under SQS's 256 KiB per batch, with room for the entries' other fields


class QueueCalls:
    """How many SQS requests of each kind this log made (the benchmark's cost per turn)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, operation: str) -> None:
        """Count one request."""
        self.counts[operation] = self.counts.get(operation, 0) + 1


class SqsIngressLog(IngressLog):
    """The queue at `settings.url` (see the module). `group_of` names an update's conversation."""

    def __init__(self, settings: QueueSettings, group_of: GroupOf, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.calls = QueueCalls()
        self._group_of = group_of
        self._backoff = backoff if backoff is not None else Backoff()
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._held: dict[int, str] = {}
        """Receipt handles of the messages this worker holds, by update id."""

    @property
    def held(self) -> int:
        """Messages received and not yet done."""
        return len(self._held)

    async def open(self) -> None:
        """Open the client and check that the queue exists and is FIFO (StoreError otherwise)."""
        if self._client is not None:
            return
        stack = AsyncExitStack()
        config = Config(retries={"max_attempts": 0, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        try:
            session = get_session()
            session.register_component("data_loader", _LOADER)  # the parsed service model, shared
            self._client = await stack.enter_async_context(
                session.create_client(
                    "sqs",
                    region_name=self.settings.region or None,
                    endpoint_url=self.settings.endpoint_url or None,
                    config=config,
                )
            )
            self._stack = stack
            reply = await self._call(
                "get_queue_attributes", QueueUrl=self.settings.url, AttributeNames=["FifoQueue", "VisibilityTimeout"]
            )
        except BaseException as exc:
            self._client, self._stack = None, None
            await stack.aclose()
            if isinstance(exc, botocore.exceptions.NoRegionError):
                raise StoreError("no AWS region for SQS: set AWS_REGION or queue.region") from exc
            raise
        if reply.get("Attributes", {}).get("FifoQueue") != "true":
            await self.close()
            raise StoreError(f"the queue {self.settings.url!r} is not a FIFO queue")

    async def close(self) -> None:
        """Close the client. Safe to call twice."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def append(self, updates: Sequence[Mapping[str, Any]]) -> None:
        """Send the updates (in order, batched); StoreError unless SQS took every one."""
        entries: list[dict[str, Any]] = []
        size = 0
        for update, (update_id, data) in zip(updates, encode_updates(updates), strict=True):
            entry = {
                "Id": str(len(entries)),
                "MessageBody": data.decode("utf-8"),
                "MessageGroupId": self._group_of(update),
                "MessageDeduplicationId": str(update_id),
            }
            if entries and (len(entries) == _BATCH or size + len(data) > _BATCH_BYTES):
                await self._send(entries)
                entries, size = [], 0
                entry["Id"] = "0"
            entries.append(entry)
            size += len(data)
        if entries:
            await self._send(entries)

    async def _send(self, entries: list[dict[str, Any]]) -> None:
        if len(entries) == 1:
            entry = entries[0]
            await self._call(
                "send_message", QueueUrl=self.settings.url, **{k: v for k, v in entry.items() if k != "Id"}
            )
            return
        reply = await self._call("send_message_batch", QueueUrl=self.settings.url, Entries=entries)
        failed = reply.get("Failed") or []
        if failed:
            # A partial failure: what was sent is deduplicated when the caller appends them all again.
            codes = sorted({str(item.get("Code")) for item in failed})
            raise StoreError(f"SQS refused {len(failed)} of {len(entries)} updates: {', '.join(codes)}")

    async def receive(self, max_messages: int = _BATCH) -> list[dict[str, Any]]:
        """Long-poll for up to `max_messages` (at most 10) updates; each is held until `done`.

        An update received again (its visibility ran out) replaces its old receipt. A message that
        is not an update is logged and deleted.
        """
        reply = await self._call(
            "receive_message",
            QueueUrl=self.settings.url,
            MaxNumberOfMessages=max(1, min(_BATCH, max_messages)),
            WaitTimeSeconds=self.settings.wait_seconds,
            VisibilityTimeout=self.settings.visibility_timeout_seconds,
        )
        updates: list[dict[str, Any]] = []
        for message in reply.get("Messages", []):
            receipt = message["ReceiptHandle"]
            try:
                update = json.loads(message["Body"])
                update_id = update["update_id"]
                if not isinstance(update_id, int):
                    raise TypeError("update_id is not an int")
            except (ValueError, KeyError, TypeError):
                log.error("queue_message_unreadable", message_id=message.get("MessageId"))
                await self._call("delete_message", QueueUrl=self.settings.url, ReceiptHandle=receipt)
                continue
            self._held[update_id] = receipt
            updates.append(update)
        return updates

    async def done(self, update_id: int) -> None:
        """Delete the update's message; an update this worker does not hold is ignored."""
        receipt = self._held.pop(update_id, None)
        if receipt is not None:
            await self._call("delete_message", QueueUrl=self.settings.url, ReceiptHandle=receipt)

    async def pending(self) -> list[dict[str, Any]]:
        """Nothing: what is not done stays in the queue, for whichever worker receives it."""
        return []

    async def waiting(self) -> int:
        """About how many messages wait in the queue, visible or held (SQS's approximate counts)."""
        reply = await self._call(
            "get_queue_attributes",
            QueueUrl=self.settings.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        attributes = reply.get("Attributes", {})
        return sum(
            int(attributes.get(name, 0))
            for name in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
        )

    async def extend_held(self) -> None:
        """Hide every held message for another visibility timeout (the worker calls this every third
        of it). A receipt SQS no longer knows (the message went to another worker) is dropped."""
        await self._change_visibility(self.settings.visibility_timeout_seconds)

    async def release(self) -> None:
        """Make every held message visible at once (a clean stop: another worker takes them now)."""
        await self._change_visibility(0)
        self._held.clear()

    async def _change_visibility(self, seconds: int) -> None:
        held = list(self._held.items())
        for start in range(0, len(held), _BATCH):
            chunk = held[start : start + _BATCH]
            entries = [
                {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": seconds}
                for index, (_, receipt) in enumerate(chunk)
            ]
            reply = await self._call("change_message_visibility_batch", QueueUrl=self.settings.url, Entries=entries)
            for failure in reply.get("Failed") or []:
                update_id, receipt = chunk[int(failure["Id"])]
                log.warning("queue_visibility_not_changed", update_id=update_id, code=failure.get("Code"))
                if self._held.get(update_id) == receipt:
                    del self._held[update_id]

    async def _call(self, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        """Call an SQS operation with the backoff's retries; StoreError when it fails for good."""
        client = self._client
        if client is None:
            raise StoreError("the ingress queue is not open")
        method = getattr(client, operation)
        try:
            async for attempt in self._backoff.retrying(retry=retry_if_exception(_is_transient), budget_seconds=20.0):
                with attempt:
                    self.calls.add(operation)
                    reply: dict[str, Any] = await method(**kwargs)
                    return reply
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise StoreError(f"SQS {operation} failed: {code}") from exc
        except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise StoreError(f"SQS {operation} failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")
