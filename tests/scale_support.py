"""Shared pieces of the scale tests: SQS FIFO queues and DynamoDB tables on the serialised moto server.

The moto server is `tests.fakes.moto_serialised` (one request at a time; SQS long polls as loops of
immediate receives): moto 5.2.5 alone can hand one FIFO message group to two consumers at once and
redeliver a group out of order after a visibility timeout, which real SQS never does, and these
tests must judge our code, not the fake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from aiobotocore.session import get_session

from conf import DynamoDBSettings, QueueSettings
from stores._dynamodb_table import _LOADER
from tests.e2e_support import SHIPPED

REGION = "us-east-1"


def _client(endpoint: str) -> Any:
    session = get_session()
    session.register_component("data_loader", _LOADER)  # parsed once for every client of the tests
    return session.create_client("sqs", region_name=REGION, endpoint_url=endpoint)


async def make_fifo_queue(endpoint: str, name: str, *, visibility: int = 30, fifo: bool = True) -> str:
    """Create a queue (FIFO unless `fifo` is False) on `endpoint`; its URL."""
    attributes = {"VisibilityTimeout": str(visibility)}
    if fifo:
        attributes["FifoQueue"] = "true"
        name = f"{name}.fifo"
    async with _client(endpoint) as client:
        reply = await client.create_queue(QueueName=name, Attributes=attributes)
    url: str = reply["QueueUrl"]
    return url


async def queue_counts(endpoint: str, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    async with _client(endpoint) as client:
        reply = await client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    attributes: dict[str, Any] = reply["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def queue_settings(endpoint: str, url: str, **extra: Any) -> QueueSettings:
    """Settings of the queue at `url` on `endpoint` (short long polls, for fast stops)."""
    return QueueSettings(url=url, endpoint_url=endpoint, region=REGION, **({"wait_seconds": 1} | extra))


def dynamodb_settings(endpoint: str, table: str) -> DynamoDBSettings:
    """The conversation and state tables `table` and `table-state` on `endpoint`, made at start."""
    return DynamoDBSettings(table=table, region=REGION, endpoint_url=endpoint, create_table=True)


def text_update(update_id: int, chat_id: int, text: str) -> dict[str, Any]:
    """A raw Telegram update: a private text message from user `chat_id`."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "T"},
            "text": text,
        },
    }


def scale_config(path: Path, *, visibility: int = 2, **sections: dict[str, Any]) -> Path:
    """The shipped configuration with a short visibility timeout, long poll and backoff, written to
    `path` (for processes: `ASSISTANT_CONFIG`); `sections` update more settings."""
    config = yaml.safe_load(SHIPPED.read_text())
    config["queue"].update({"visibility_timeout_seconds": visibility, "wait_seconds": 1})
    config["telegram"].update({"poll_timeout_seconds": 1})
    config["backoff"].update({"initial_seconds": 0.05, "max_seconds": 0.2, "jitter_seconds": 0.0})
    config["actors"].update({"stop_grace_seconds": 3})
    for name, values in sections.items():
        config[name].update(values)
    path.write_text(yaml.safe_dump(config))
    return path


def scale_env(endpoint: str, queue_url: str, table: str, config: Path) -> dict[str, str]:
    """The contract's variables for DynamoDB and the queue on the moto server at `endpoint`."""
    return {
        "ASSISTANT_CONFIG": str(config),
        "STORE_BACKEND": "dynamodb",
        "DYNAMODB_TABLE": table,
        "DYNAMODB_ENDPOINT_URL": endpoint,
        "DYNAMODB_CREATE_TABLE": "true",
        "INGRESS_QUEUE_URL": queue_url,
        "SQS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


async def make_tables(endpoint: str, table: str) -> None:
    """Create the conversation and state tables up front (processes starting together would race)."""
    from conf import StoreSettings
    from stores import build_feature_stores, build_stores

    settings = StoreSettings(backend="dynamodb", dynamodb=dynamodb_settings(endpoint, table))
    store, _ = build_stores(settings)
    async with store, build_feature_stores(settings):
        pass


async def stored_records(endpoint: str, table: str, conversation_id: str) -> list[dict[str, Any]]:
    """Every record of a conversation in the DynamoDB store."""
    from stores import DynamoDBConversationStore

    settings = DynamoDBSettings(table=table, region=REGION, endpoint_url=endpoint)
    async with DynamoDBConversationStore(settings) as store:
        return await store.load(conversation_id)
