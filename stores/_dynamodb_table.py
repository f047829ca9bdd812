"""One long-lived aiobotocore DynamoDB client for the store's table, with retries and table set-up.

Shared by the conversation store and the ingress log: the first `acquire` opens the client (and
creates or checks the table), the last `release` closes it. Importing this module imports
aiobotocore, so `stores` imports it only when the DynamoDB backend is asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import botocore.exceptions
import structlog
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.loaders import create_loader
from tenacity import RetryCallState, retry_if_exception

from conf.settings import DynamoDBSettings
from ops.backoff import Backoff
from stores.base import StoreError

__all__ = [
    "INGRESS_PARTITION",
    "PARTITION_KEY",
    "SORT_KEY",
    "TTL_ATTRIBUTE",
    "ConditionFailed",
    "DynamoDBTable",
    "TableUser",
    "partition_key",
]

log = structlog.get_logger(__name__)

# One loader for every client: it caches the parsed service model (JSON of several MB), so a
# second client (the state table's, a reopened store's) costs milliseconds and no more memory.
_LOADER = create_loader()

PARTITION_KEY = "conversation_id"
SORT_KEY = "seq"
TTL_ATTRIBUTE = "expires_at"
INGRESS_PARTITION = "ingress"
"""The ingress log's partition. Conversation partitions start with `c#` or `h#`, so no id maps here."""

_MAX_PLAIN_ID_BYTES = 1024  # DynamoDB allows 2048 bytes of partition key; leave room for the prefix
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


def partition_key(conversation_id: str) -> str:
    """The partition of a conversation: `c#<id>`, or `h#<sha256 of id>` for an id that is too long
    for a key or not valid Unicode. Distinct ids always get distinct partitions."""
    try:
        raw: bytes | None = conversation_id.encode("utf-8")
    except UnicodeEncodeError:
        raw = None  # a lone surrogate: DynamoDB strings must be valid UTF-8
    if raw is not None and len(raw) <= _MAX_PLAIN_ID_BYTES:
        return "c#" + conversation_id
    return "h#" + hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).hexdigest()


class ConditionFailed(StoreError):
    """A conditional write found the item already there (the caller turns it into ConflictError)."""


class DynamoDBTable:
    """The table named in `settings`, reached through one client between `acquire` and `release`.

    Region and endpoint come from the settings (an empty one means botocore's default chain);
    credentials always come from botocore's standard chain, never from the settings.
    Transient failures (throttling, 5xx, connection errors) are retried under `backoff` for at most
    `retry_budget_seconds`; botocore's own retries are off so that one policy applies (None: the
    default `Backoff()`).
    `page_size` limits items per Query page (None: DynamoDB's 1 MB pages), for tests.
    """

    def __init__(
        self,
        settings: DynamoDBSettings,
        backoff: Backoff | None = None,
        *,
        retry_budget_seconds: float = 20.0,
        request_timeout_seconds: float = 10.0,
        page_size: int | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.table
        self.page_size = page_size
        self._backoff = backoff if backoff is not None else Backoff()
        self._budget = retry_budget_seconds
        self._timeout = request_timeout_seconds
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    def expires_at(self) -> int | None:
        """The TTL epoch second for an item written now, or None when TTL is off."""
        days = self.settings.ttl_days
        return int(time.time()) + days * 86400 if days > 0 else None

    async def acquire(self) -> None:
        """Open the client (first user only) and create or check the table. StoreError on failure."""
        async with self._lock:
            if self._users == 0:
                await self._open()
            self._users += 1

    async def release(self) -> None:
        """Close the client when its last user releases it."""
        async with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0 and self._stack is not None:
                stack, self._stack, self._client = self._stack, None, None
                await stack.aclose()

    async def call(self, operation: str, /, **kwargs: Any) -> dict[str, Any]:
        """Call a DynamoDB operation (snake_case name) with retries.

        Raises ConditionFailed for a failed condition, StoreError for anything else.
        """
        client = self._client
        if client is None:
            raise StoreError(f"the DynamoDB table {self.name!r} is not open")
        method: Callable[..., Awaitable[dict[str, Any]]] = getattr(client, operation)
        try:
            async for attempt in self._backoff.retrying(
                retry=retry_if_exception(_is_transient), budget_seconds=self._budget, before_sleep=self._log_retry
            ):
                with attempt:
                    return await method(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = _error_code(exc)
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed("the item already exists") from exc
            if code == "ResourceNotFoundException":
                raise StoreError(f"the DynamoDB table {self.name!r} does not exist") from exc
            raise StoreError(f"DynamoDB {operation} failed: {code}") from exc
        except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise StoreError(f"DynamoDB {operation} failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")

    async def sleep_before_retry(self, attempt: int) -> None:
        """Back off before resubmitting unprocessed batch items (attempt is 1-based)."""
        await self._backoff.sleep(self._backoff.delay(attempt))

    async def query_items(self, request: dict[str, Any], *, first_page_only: bool = False) -> list[dict[str, Any]]:
        """The items a Query `request` finds, following its pages unless `first_page_only`."""
        items: list[dict[str, Any]] = []
        while True:
            page = await self.call("query", **request)
            items.extend(page.get("Items", []))
            last_key = page.get("LastEvaluatedKey")
            if not last_key or first_page_only:
                return items
            request["ExclusiveStartKey"] = last_key

    async def batch_write(self, requests: list[dict[str, Any]], what: str) -> None:
        """BatchWriteItem in groups of 25, resubmitting what DynamoDB left unprocessed with backoff;
        StoreError (naming the `what` left) when a group is still unprocessed after 10 attempts."""
        for start in range(0, len(requests), 25):
            pending = requests[start : start + 25]
            for attempt in range(1, 11):
                reply = await self.call("batch_write_item", RequestItems={self.name: pending})
                pending = reply.get("UnprocessedItems", {}).get(self.name, [])
                if not pending:
                    break
                await self.sleep_before_retry(attempt)
            else:
                raise StoreError(f"DynamoDB left {len(pending)} {what} unprocessed after 10 attempts")

    def _log_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "dynamodb_retry",
            table=self.name,
            attempt=state.attempt_number,
            error=type(error).__name__ if error is not None else None,
            code=_error_code(error) if isinstance(error, botocore.exceptions.ClientError) else None,
            wait_ms=round((state.next_action.sleep if state.next_action else 0) * 1000),
        )

    async def _open(self) -> None:
        stack = AsyncExitStack()
        config = Config(
            retries={"max_attempts": 0, "mode": "standard"},
            connect_timeout=min(5.0, self._timeout),
            read_timeout=self._timeout,
            max_pool_connections=64,
        )
        try:
            session = get_session()
            session.register_component("data_loader", _LOADER)
            self._client = await stack.enter_async_context(
                session.create_client(
                    "dynamodb",
                    region_name=self.settings.region or None,
                    endpoint_url=self.settings.endpoint_url or None,
                    config=config,
                )
            )
            self._stack = stack
            if self.settings.create_table:
                await self._create_table()
            else:
                await self._check_table()
        except BaseException as exc:
            self._client, self._stack = None, None
            await stack.aclose()
            if isinstance(exc, botocore.exceptions.NoRegionError):
                raise StoreError("no AWS region for DynamoDB: set AWS_REGION or store.dynamodb.region") from exc
            if isinstance(exc, botocore.exceptions.BotoCoreError):
                raise StoreError(f"cannot reach DynamoDB: {exc}") from exc
            raise

    async def _check_table(self) -> None:
        description = await self.call("describe_table", TableName=self.name)
        keys = {(key["AttributeName"], key["KeyType"]) for key in description["Table"]["KeySchema"]}
        types = {item["AttributeName"]: item["AttributeType"] for item in description["Table"]["AttributeDefinitions"]}
        wanted = {(PARTITION_KEY, "HASH"), (SORT_KEY, "RANGE")}
        if keys != wanted or types.get(PARTITION_KEY) != "S" or types.get(SORT_KEY) != "N":
            raise StoreError(
                f"the DynamoDB table {self.name!r} must have partition key {PARTITION_KEY} (S) "
                f"and sort key {SORT_KEY} (N); see docs/dynamodb.md"
            )

    async def _create_table(self) -> None:
        await self._create_and_check(
            KeySchema=[
                {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": SORT_KEY, "AttributeType": "N"},
            ],
        )
        if self.settings.ttl_days > 0:
            await self._enable_ttl()

    async def _create_and_check(self, **definition: Any) -> None:
        """Create the table as `definition` says (billed per request) unless it is there already,
        then wait until it is ACTIVE and check it."""
        try:
            await self.call("create_table", TableName=self.name, BillingMode="PAY_PER_REQUEST", **definition)
            log.info("dynamodb_table_created", table=self.name)
        except StoreError as exc:
            if not _caused_by(exc, "ResourceInUseException"):
                raise
        await self._wait_until_active()
        await self._check_table()

    async def _wait_until_active(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            description = await self.call("describe_table", TableName=self.name)
            if description["Table"].get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise StoreError(f"the DynamoDB table {self.name!r} did not become ACTIVE within 120 s")
            await asyncio.sleep(0.5)  # polling the table's status: there is nothing to wait on instead

    async def _enable_ttl(self) -> None:
        try:
            await self.call(
                "update_time_to_live",
                TableName=self.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        except StoreError as exc:
            # DynamoDB refuses to enable TTL that is already enabled; that is the state we want.
            if not _caused_by(exc, "ValidationException"):
                raise


class TableUser:
    """Opens and closes a shared DynamoDBTable: a store's `open` acquires it once, `close` releases it."""

    def __init__(self, table: DynamoDBTable) -> None:
        self.table = table
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


def _error_code(exc: BaseException | None) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _caused_by(exc: StoreError, code: str) -> bool:
    return _error_code(exc.__cause__) == code


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return _error_code(exc) in _TRANSIENT_CODES or int(status) >= 500
    return isinstance(
        exc,
        (
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.ConnectionError,
            aiohttp.ClientError,
            ConnectionError,
            TimeoutError,
        ),
    )
