"""Conversation stores, the ingress log, and the stores of facts, reminders, usage and preferences:
file (default), DynamoDB and in-memory backends.

The DynamoDB classes are loaded on first use, so that `import stores` does not import
aiobotocore (slow to import, and unused with the file backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stores.base import ConflictError, ConversationStore, IngressLog, Record, StoreError
from stores.factory import build_feature_stores, build_stores
from stores.facts import AddedFact, Fact, FactLimits, FactRejected, FactSource, FactStore, InMemoryFactStore
from stores.features import FeatureStores
from stores.file import FileConversationStore
from stores.file_features import FileFactStore, FilePreferenceStore, FileUsageStore
from stores.file_ingress import FileIngressLog
from stores.file_reminders import FileReminderStore
from stores.memory import InMemoryConversationStore, InMemoryIngressLog
from stores.memory_reminders import InMemoryReminderStore
from stores.ranking import FactRanker
from stores.reminders import (
    InvalidReminder,
    NewReminder,
    Reminder,
    ReminderLimitReached,
    ReminderState,
    ReminderStore,
    ReplyTarget,
    firing_id,
)
from stores.usage import InMemoryPreferenceStore, InMemoryUsageStore, PreferenceStore, Usage, UsageStore

if TYPE_CHECKING:
    from stores.dynamodb import DynamoDBConversationStore, DynamoDBIngressLog
    from stores.dynamodb_features import DynamoDBFactStore, DynamoDBPreferenceStore, DynamoDBUsageStore
    from stores.dynamodb_reminders import DynamoDBReminderStore

__all__ = [
    "AddedFact",
    "ConflictError",
    "ConversationStore",
    "DynamoDBConversationStore",
    "DynamoDBFactStore",
    "DynamoDBIngressLog",
    "DynamoDBPreferenceStore",
    "DynamoDBReminderStore",
    "DynamoDBUsageStore",
    "Fact",
    "FactLimits",
    "FactRanker",
    "FactRejected",
    "FactSource",
    "FactStore",
    "FeatureStores",
    "FileConversationStore",
    "FileFactStore",
    "FileIngressLog",
    "FilePreferenceStore",
    "FileReminderStore",
    "FileUsageStore",
    "InMemoryConversationStore",
    "InMemoryFactStore",
    "InMemoryIngressLog",
    "InMemoryPreferenceStore",
    "InMemoryReminderStore",
    "InMemoryUsageStore",
    "IngressLog",
    "InvalidReminder",
    "NewReminder",
    "PreferenceStore",
    "Record",
    "Reminder",
    "ReminderLimitReached",
    "ReminderState",
    "ReminderStore",
    "ReplyTarget",
    "StoreError",
    "Usage",
    "UsageStore",
    "build_feature_stores",
    "build_stores",
    "firing_id",
]

_LAZY = frozenset({"DynamoDBConversationStore", "DynamoDBIngressLog"})
_LAZY_FEATURES = {
    "DynamoDBFactStore": "stores.dynamodb_features",
    "DynamoDBPreferenceStore": "stores.dynamodb_features",
    "DynamoDBUsageStore": "stores.dynamodb_features",
    "DynamoDBReminderStore": "stores.dynamodb_reminders",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from stores import dynamodb

        return getattr(dynamodb, name)
    if name in _LAZY_FEATURES:
        import importlib

        return getattr(importlib.import_module(_LAZY_FEATURES[name]), name)
    raise AttributeError(f"module 'stores' has no attribute {name!r}")
