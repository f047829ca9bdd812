"""Build the configured store and ingress log."""

from __future__ import annotations

from pathlib import Path

from conf.settings import BackoffSettings, StoreSettings
from ops.backoff import Backoff
from stores.base import ConversationStore, IngressLog, StoreError
from stores.features import FeatureStores, build_feature_stores

__all__ = ["FeatureStores", "build_feature_stores", "build_stores"]


def build_stores(
    settings: StoreSettings, backoff: Backoff | BackoffSettings | None = None, *, read_only_ingress: bool = False
) -> tuple[ConversationStore, IngressLog]:
    """The conversation store and ingress log of `settings.backend`, not yet opened.

    Open both with `async with` (or `open()`); for DynamoDB they share one client, which closes
    when both are closed. `backoff` paces DynamoDB's retries (default: `Backoff()`;
    plain settings are made into `Backoff(settings)`).
    The file backend keeps its ingress log in `<dir>/_ingress/updates.jsonl`, a name no
    conversation file can take. `read_only_ingress` opens that log only to read it (`--check`
    beside a running assistant must not repair or compact the live file).
    """
    if settings.backend == "file":
        from stores.file import FileConversationStore
        from stores.file_ingress import INGRESS_FILE, FileIngressLog

        directory = Path(settings.dir)
        return FileConversationStore(directory), FileIngressLog(directory / INGRESS_FILE, read_only=read_only_ingress)
    if settings.backend == "memory":
        from stores.memory import InMemoryConversationStore, InMemoryIngressLog

        return InMemoryConversationStore(), InMemoryIngressLog()
    if settings.backend == "dynamodb":
        # Imported here: aiobotocore costs start-up time that the file backend should not pay.
        from stores.dynamodb import DynamoDBConversationStore, DynamoDBIngressLog, DynamoDBTable

        table = DynamoDBTable(settings.dynamodb, Backoff.of(backoff) if backoff is not None else None)
        return (
            DynamoDBConversationStore(settings.dynamodb, table=table),
            DynamoDBIngressLog(settings.dynamodb, table=table),
        )
    raise StoreError(f"unknown store backend {settings.backend!r}")
