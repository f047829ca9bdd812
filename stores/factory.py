"""Build the configured store and ingress log."""

from __future__ import annotations

from pathlib import Path

from conf.settings import BackoffSettings, StoreSettings
from stores.base import ConversationStore, IngressLog, StoreError
from stores.features import FeatureStores, build_feature_stores

__all__ = ["FeatureStores", "build_feature_stores", "build_stores"]


def build_stores(
    settings: StoreSettings, backoff: BackoffSettings | None = None
) -> tuple[ConversationStore, IngressLog]:
    """The conversation store and ingress log of `settings.backend`, not yet opened.

    Open both with `async with` (or `open()`); for DynamoDB they share one client, which closes
    when both are closed. `backoff` paces DynamoDB's retries (default: BackoffSettings()).
    The file backend keeps its ingress log in `<dir>/_ingress/updates.jsonl`, a name no
    conversation file can take.
    """
    if settings.backend == "file":
        from stores.file import FileConversationStore
        from stores.file_ingress import INGRESS_FILE, FileIngressLog

        directory = Path(settings.dir)
        return FileConversationStore(directory), FileIngressLog(directory / INGRESS_FILE)
    if settings.backend == "memory":
        from stores.memory import InMemoryConversationStore, InMemoryIngressLog

        return InMemoryConversationStore(), InMemoryIngressLog()
    if settings.backend == "dynamodb":
        # Imported here: aiobotocore costs start-up time that the file backend should not pay.
        from stores.dynamodb import DynamoDBConversationStore, DynamoDBIngressLog, DynamoDBTable

        table = DynamoDBTable(settings.dynamodb, backoff)
        return (
            DynamoDBConversationStore(settings.dynamodb, backoff, table=table),
            DynamoDBIngressLog(settings.dynamodb, backoff, table=table),
        )
    raise StoreError(f"unknown store backend {settings.backend!r}")
