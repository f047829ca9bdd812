"""The DynamoDB backend beyond the contract, against moto's server over HTTP.

Covers the documented item layout, a real 10,000-record history, retries of transient errors
(injected by a proxy in front of moto), bounded failure, table creation and checking, TTL, the
shared client, and that `import stores` does not import aiobotocore.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from conf.settings import BackoffSettings, DynamoDBSettings, StoreSettings
from ops.backoff import Backoff
from stores import ConflictError, StoreError, build_stores
from stores.dynamodb import CHUNK_BYTES, DynamoDBConversationStore, DynamoDBIngressLog, DynamoDBTable
from tests.fakes.moto_server import FaultInjectingProxy, closed_port_endpoint, moto_server
from tests.feature_backends import dynamodb_settings
from tests.test_store_contract import random_text, records

pytestmark = pytest.mark.usefixtures("aws_credentials")
FAST = Backoff(BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def settings(moto_endpoint: str) -> DynamoDBSettings:
    return dynamodb_settings(moto_endpoint, prefix="t")


async def all_items(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = await client.scan(**request)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def test_items_follow_the_documented_layout(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    big = {"seq": 2, "text": random_text(1024 * 1024)}
    async with DynamoDBConversationStore(settings) as store:
        await store.append("-1001234567890:42", [*records(0, 1), {"seq": 1, "text": "z" * 50_000}, big])
        await store.append("x" * 3000, records(0, 1))
    async with DynamoDBIngressLog(settings) as ingress:
        await ingress.append([{"update_id": 7}])
    items = await all_items(dynamodb_client, settings.table)
    by_key = {(item["conversation_id"]["S"], item["seq"]["N"]): item for item in items}
    small = by_key[("c#-1001234567890:42", "0")]
    assert small["record"]["S"] == '{"seq":0,"role":"user","text":"message 0"}'
    assert "zrecord" in by_key[("c#-1001234567890:42", "1")]  # compressed, in one item
    head = by_key[("c#-1001234567890:42", "2")]
    parts = int(head["parts"]["N"])
    assert parts >= 3
    for index in range(1, parts):
        assert f"2.{index:06d}" in {seq for pk, seq in by_key if pk == "c#-1001234567890:42"}
    assert all(len(item.get("zrecord", {}).get("B", b"")) <= CHUNK_BYTES for item in items)
    assert any(pk.startswith("h#") and len(pk) == 66 for pk, _ in by_key)  # a too-long id is hashed
    assert by_key[("ingress", "7")]["update"]["S"] == '{"update_id":7}'
    assert not any("expires_at" in item for item in items)


async def test_a_multi_megabyte_history_loads_across_query_pages(settings: DynamoDBSettings) -> None:
    # 2,500 records of 1 KB: three of DynamoDB's (and moto's) 1 MB Query pages. Seeded with
    # BatchWriteItem in the layout the store writes, since conditional PutItems cost ~3 ms each on
    # moto; moto's Query also costs ~0.4 ms per item, so bench/stores.py times 10,000 instead.
    history = [{"seq": seq, "text": f"message {seq} " + "x" * 1000} for seq in range(2_500)]
    requests = [
        {
            "PutRequest": {
                "Item": {
                    "conversation_id": {"S": "c#long"},
                    "seq": {"N": str(record["seq"])},
                    "record": {"S": f'{{"seq":{record["seq"]},"text":"{record["text"]}"}}'},
                }
            }
        }
        for record in history
    ]
    async with FaultInjectingProxy(settings.endpoint_url) as proxy:
        proxied = settings.model_copy(update={"endpoint_url": proxy.url})
        async with DynamoDBConversationStore(proxied) as store:
            await store._batch_write(requests)
            before = proxy.requests
            assert await store.load("long") == history
            assert proxy.requests - before == 3
            await store.append("long", [{"seq": 2_500}])
            with pytest.raises(ConflictError):
                await store.append("long", [{"seq": 2_499}])


async def test_throttling_is_retried_until_it_passes(settings: DynamoDBSettings) -> None:
    async with FaultInjectingProxy(settings.endpoint_url) as proxy:
        proxied = settings.model_copy(update={"endpoint_url": proxy.url})
        async with DynamoDBConversationStore(proxied, FAST) as store:
            proxy.fail_next(2, error="ProvisionedThroughputExceededException")
            proxy.fail_next(1, error="ThrottlingException")
            with capture_logs() as logs:
                await store.append("c", records(0, 1))
            proxy.fail_next(2, status=500, error="InternalServerError")
            assert await store.load("c") == records(0, 1)
        assert proxy.failed == 5
    retries = [entry for entry in logs if entry["event"] == "dynamodb_retry"]
    assert [entry["code"] for entry in retries] == [
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
    ]


async def test_a_client_error_is_not_retried(settings: DynamoDBSettings) -> None:
    async with FaultInjectingProxy(settings.endpoint_url) as proxy:
        proxied = settings.model_copy(update={"endpoint_url": proxy.url})
        async with DynamoDBConversationStore(proxied, FAST) as store:
            proxy.fail_next(1, error="ValidationException")
            before = proxy.requests
            with pytest.raises(StoreError) as raised:
                await store.append("c", records(0, 1))
            assert proxy.requests == before + 1
            assert "ValidationException" in str(raised.value)
            assert raised.value.conversation_id == "c"
            assert not isinstance(raised.value, ConflictError)


async def test_an_unreachable_endpoint_fails_within_the_retry_budget() -> None:
    settings = DynamoDBSettings(table="t", region="us-east-1", endpoint_url=closed_port_endpoint())
    table = DynamoDBTable(settings, FAST, retry_budget_seconds=1.0, request_timeout_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError):
        await DynamoDBConversationStore(settings, table=table).open()
    assert time.monotonic() - started < 5


async def test_throttling_that_outlasts_the_budget_becomes_a_store_error(settings: DynamoDBSettings) -> None:
    async with FaultInjectingProxy(settings.endpoint_url) as proxy:
        proxied = settings.model_copy(update={"endpoint_url": proxy.url})
        table = DynamoDBTable(proxied, FAST, retry_budget_seconds=0.5)
        async with DynamoDBConversationStore(proxied, table=table) as store:
            proxy.fail_next(10_000, error="ThrottlingException")
            started = time.monotonic()
            with pytest.raises(StoreError):
                await store.append("c", records(0, 1))
            assert time.monotonic() - started < 3
            assert proxy.failed > 3


async def test_a_missing_table_is_reported_when_not_allowed_to_create_it(settings: DynamoDBSettings) -> None:
    missing = settings.model_copy(update={"create_table": False})
    with pytest.raises(StoreError) as raised:
        await DynamoDBConversationStore(missing, FAST).open()
    assert settings.table in str(raised.value)


async def test_a_table_with_another_key_schema_is_refused(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    await dynamodb_client.create_table(
        TableName=settings.table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(StoreError) as raised:
        await DynamoDBConversationStore(settings.model_copy(update={"create_table": False}), FAST).open()
    assert "sort key seq" in str(raised.value)


async def test_an_existing_table_is_used_as_it_is(settings: DynamoDBSettings) -> None:
    async with DynamoDBConversationStore(settings) as store:
        await store.append("c", records(0, 2))
    async with DynamoDBConversationStore(settings) as store:  # create_table again: no error
        assert await store.load("c") == records(0, 2)
    async with DynamoDBConversationStore(settings.model_copy(update={"create_table": False})) as store:
        assert await store.load("c") == records(0, 2)


async def test_ttl_is_enabled_and_set_on_every_item(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    with_ttl = settings.model_copy(update={"ttl_days": 7})
    async with DynamoDBConversationStore(with_ttl) as store, DynamoDBIngressLog(with_ttl) as ingress:
        await store.append("c", [{"seq": 0, "text": random_text(800_000)}])
        await ingress.append([{"update_id": 1}])
    described = await dynamodb_client.describe_time_to_live(TableName=settings.table)
    assert described["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    assert described["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    items = await all_items(dynamodb_client, settings.table)
    week = 7 * 86400
    assert len(items) >= 3
    assert any("part" in item for item in items)  # chunks expire with their record
    for item in items:
        assert abs(int(item["expires_at"]["N"]) - (time.time() + week)) < 120


async def test_two_writers_cannot_both_take_a_seq(settings: DynamoDBSettings) -> None:
    async with DynamoDBConversationStore(settings) as first, DynamoDBConversationStore(settings) as second:
        await first.append("c", records(0, 1))
        outcomes = await asyncio.gather(
            first.append("c", [{"seq": 1, "writer": "first"}]),
            second.append("c", [{"seq": 1, "writer": "second"}]),
            return_exceptions=True,
        )
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["ConflictError", "NoneType"]
        winner = "first" if outcomes[0] is None else "second"
        assert await second.load("c") == [*records(0, 1), {"seq": 1, "writer": winner}]


async def test_a_split_record_conflicts_without_touching_the_stored_one(settings: DynamoDBSettings) -> None:
    original = {"seq": 0, "text": random_text(900_000, seed=1)}
    async with DynamoDBConversationStore(settings) as store:
        await store.append("c", [original])
        with pytest.raises(ConflictError):
            await store.append("c", [{"seq": 0, "text": random_text(900_000, seed=2)}])
        assert await store.load("c") == [original]


async def test_an_unreadable_item_is_logged_and_skipped(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    async with DynamoDBConversationStore(settings) as store:
        await store.append("c", records(0, 3))
        await dynamodb_client.put_item(
            TableName=settings.table, Item={"conversation_id": {"S": "c#c"}, "seq": {"N": "1"}, "record": {"S": "{"}}
        )
        with capture_logs() as logs:
            assert await store.load("c") == [*records(0, 1), *records(2, 3)]
    assert [(entry["event"], entry["seq"]) for entry in logs] == [("store_record_unreadable", 1)]


async def test_the_factory_shares_one_client_between_store_and_log(settings: DynamoDBSettings) -> None:
    store, ingress = build_stores(StoreSettings(backend="dynamodb", dynamodb=settings), FAST)
    assert isinstance(store, DynamoDBConversationStore)
    assert isinstance(ingress, DynamoDBIngressLog)
    assert store.table is ingress.table
    async with store:
        async with ingress:
            await ingress.append([{"update_id": 3}])
        # Closing the log leaves the store's client open.
        await store.append("c", records(0, 1))
        assert await store.load("c") == records(0, 1)
    with pytest.raises(StoreError):
        await store.load("c")  # closed now


def test_importing_stores_does_not_import_aiobotocore() -> None:
    code = "import sys, stores; print('aiobotocore' in sys.modules, 'botocore' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert result.stdout.split() == ["False", "False"]
