"""The feature stores beyond the contract: the DynamoDB state table's layout and checks (moto over
HTTP), retries, unreadable items, the factory of every backend, and the settings."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from conf.settings import DynamoDBSettings, StoreSettings, load_settings
from stores import (
    FactSource,
    FeatureStores,
    FileFactStore,
    FilePreferenceStore,
    InMemoryReminderStore,
    NewReminder,
    ReplyTarget,
    StoreError,
    Usage,
    build_feature_stores,
)
from stores.factory import build_feature_stores as from_factory
from tests.fakes.moto_server import FaultInjectingProxy
from tests.feature_backends import FAST, dynamodb_settings

DUE = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.fixture
def settings(moto_endpoint: str) -> DynamoDBSettings:
    return dynamodb_settings(moto_endpoint)


def build(settings: DynamoDBSettings) -> FeatureStores:
    return build_feature_stores(StoreSettings(backend="dynamodb", dynamodb=settings), FAST)


async def test_the_state_table_is_created_with_the_documented_keys_and_index(
    settings: DynamoDBSettings, dynamodb_client: Any
) -> None:
    async with build(settings) as stores:
        assert len({id(store.table) for store in stores}) == 1  # type: ignore[attr-defined]
    table = (await dynamodb_client.describe_table(TableName=f"{settings.table}-state"))["Table"]
    assert {(key["AttributeName"], key["KeyType"]) for key in table["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "gsi1"
    assert index["Projection"]["ProjectionType"] == "ALL"
    assert {(key["AttributeName"], key["KeyType"]) for key in index["KeySchema"]} == {
        ("gsi1pk", "HASH"),
        ("gsi1sk", "RANGE"),
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


async def test_items_follow_the_documented_layout(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    async with build(settings) as stores:
        fact = (await stores.facts.add(111, "likes tea", FactSource("-100:7", 9))).fact
        active = await stores.reminders.create(NewReminder("-100:7", ReplyTarget(-100, 7), 111, "hi", DUE, "UTC"))
        cancelled = await stores.reminders.create(NewReminder("-100:7", ReplyTarget(-100, 7), 111, "x", DUE, "UTC"))
        await stores.reminders.cancel("-100:7", cancelled.id)
        await stores.usage.add(111, "2026-05-01", Usage(input_tokens=10, cost_micros=3))
        await stores.preferences.set_model("-100:7", "gpt-4o-mini")
        await stores.preferences.set_timezone(111, "Europe/Berlin")
    items = (await dynamodb_client.scan(TableName=f"{settings.table}-state"))["Items"]
    by_key = {(item["pk"]["S"], item["sk"]["S"]): item for item in items}
    assert set(by_key) == {
        ("fact#111", fact.id),
        ("rem#c#-100:7", active.id),
        ("rem#c#-100:7", cancelled.id),
        ("usage#111", "2026-05-01"),
        ("pref#model#c#-100:7", "-"),
        ("pref#timezone#111", "-"),
    }
    assert by_key[("fact#111", fact.id)]["uses"] == {"N": "0"}
    reminder = by_key[("rem#c#-100:7", active.id)]
    micros = str(int((DUE - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)))
    assert (reminder["gsi1pk"]["S"], reminder["gsi1sk"]["S"]) == ("due", micros.zfill(20))
    assert (reminder["state"]["S"], reminder["next_due"]["N"]) == ("active", micros)
    assert "gsi1pk" not in by_key[("rem#c#-100:7", cancelled.id)]  # out of the due index
    usage = by_key[("usage#111", "2026-05-01")]
    assert (usage["gsi1pk"]["S"], usage["gsi1sk"]["S"]) == ("usage-month#2026-05", "111#2026-05-01")
    assert (usage["input_tokens"]["N"], usage["cost_micros"]["N"], usage["output_tokens"]["N"]) == ("10", "3", "0")
    assert by_key[("pref#timezone#111", "-")]["value"] == {"S": "Europe/Berlin"}


async def test_a_missing_state_table_is_reported_when_not_allowed_to_create_it(settings: DynamoDBSettings) -> None:
    stores = build(settings.model_copy(update={"create_table": False}))
    with pytest.raises(StoreError) as raised:
        await stores.open()
    assert f"{settings.table}-state" in str(raised.value)
    await stores.close()


async def test_a_state_table_without_the_index_is_refused(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    await dynamodb_client.create_table(
        TableName=f"{settings.table}-state",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(StoreError, match="an index gsi1"):
        await build(settings.model_copy(update={"create_table": False})).open()
    with pytest.raises(StoreError, match="an index gsi1"):
        await build(settings).open()  # create_table finds it there, and checks it all the same


async def test_an_existing_state_table_is_used_as_it_is(settings: DynamoDBSettings) -> None:
    async with build(settings) as stores:
        await stores.preferences.set_timezone(1, "Asia/Tokyo")
    named = settings.model_copy(update={"create_table": False, "state_table": f"{settings.table}-state"})
    async with build(named) as stores:
        assert await stores.preferences.timezone(1) == "Asia/Tokyo"


async def test_throttling_is_retried_for_the_state_table_too(settings: DynamoDBSettings) -> None:
    async with FaultInjectingProxy(settings.endpoint_url) as proxy:
        async with build(settings.model_copy(update={"endpoint_url": proxy.url})) as stores:
            proxy.fail_next(2, error="ThrottlingException")
            await stores.usage.add(1, "2026-05-01", Usage(input_tokens=1))
            assert await stores.usage.day(1, "2026-05-01") == Usage(input_tokens=1)
        assert proxy.failed == 2


async def test_unreadable_items_are_logged_and_skipped(settings: DynamoDBSettings, dynamodb_client: Any) -> None:
    async with build(settings) as stores:
        good = (await stores.facts.add(1, "good", FactSource("c"))).fact
        made = await stores.reminders.create(NewReminder("c", ReplyTarget(1), 1, "good", DUE, "UTC"))
        table = f"{settings.table}-state"
        await dynamodb_client.put_item(
            TableName=table, Item={"pk": {"S": "fact#1"}, "sk": {"S": "bad"}, "data": {"S": "{"}}
        )
        bad_reminder = {"pk": {"S": "rem#c#c"}, "sk": {"S": "bad"}, "data": {"S": "[]"}, "state": {"S": "active"}}
        await dynamodb_client.put_item(TableName=table, Item=bad_reminder)
        with capture_logs() as logs:
            assert await stores.facts.list_for_user(1) == [good]
            assert await stores.reminders.list_for_conversation("c") == [made]
    assert [entry["event"] for entry in logs] == ["fact_item_unreadable", "reminder_item_unreadable"]


async def test_the_factory_builds_each_backend_and_file_stores_live_beside_the_conversations(tmp_path: Path) -> None:
    assert from_factory is build_feature_stores
    memory = build_feature_stores(StoreSettings(backend="memory"))
    assert isinstance(memory.reminders, InMemoryReminderStore)
    async with build_feature_stores(StoreSettings(backend="file", dir=str(tmp_path / "conversations"))) as stores:
        assert isinstance(stores.facts, FileFactStore)
        await stores.facts.add(1, "x", FactSource("c"))
        await stores.reminders.create(NewReminder("c", ReplyTarget(1), 1, "x", DUE, "UTC"))
        await stores.usage.add(1, "2026-05-01", Usage(output_tokens=1))
        await stores.preferences.set_timezone(1, "UTC")
    assert sorted(path.name for path in (tmp_path / "conversations").iterdir()) == [
        "_facts",
        "_preferences",
        "_reminders",
        "_usage",
    ]
    with pytest.raises(StoreError, match="unknown store backend"):
        build_feature_stores(StoreSettings.model_construct(backend="carrier-pigeon"))  # type: ignore[arg-type]


async def test_stores_opened_before_a_failure_are_closed_again(
    settings: DynamoDBSettings, dynamodb_client: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    dynamodb = build(settings)
    stores = FeatureStores(dynamodb.facts, dynamodb.reminders, dynamodb.usage, FilePreferenceStore(blocker / "x"))
    with pytest.raises(StoreError, match="cannot create the directory"):
        await stores.open()
    # The state table was opened (and so created), then closed when the last store failed.
    described = await dynamodb_client.describe_table(TableName=f"{settings.table}-state")
    assert described["Table"]["TableStatus"] == "ACTIVE"
    with pytest.raises(StoreError, match="not open"):
        await dynamodb.facts.list_for_user(1)


def test_the_state_table_is_named_after_the_conversation_table_unless_set() -> None:
    assert DynamoDBSettings().state_table_name == "assistant-conversations-state"
    assert DynamoDBSettings(table="prod").state_table_name == "prod-state"
    assert DynamoDBSettings(table="prod", state_table="shared-state").state_table_name == "shared-state"
    shipped = load_settings(REPO / "conf" / "config.yml", env={"DYNAMODB_TABLE": "mine"})
    assert shipped.store.dynamodb.state_table_name == "mine-state"


def test_building_file_feature_stores_does_not_import_aiobotocore() -> None:
    code = (
        "import sys, stores; from conf.settings import StoreSettings;"
        " stores.build_feature_stores(StoreSettings()); print('aiobotocore' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30, cwd=REPO
    )
    assert result.stdout.split() == ["False"]
