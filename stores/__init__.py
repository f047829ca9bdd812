"""Conversation stores and the ingress log: file (default), DynamoDB and in-memory backends.

The DynamoDB classes are loaded on first use, so that `import stores` does not import
aiobotocore (slow to import, and unused with the file backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stores.base import ConflictError, ConversationStore, IngressLog, Record, StoreError
from stores.factory import build_stores
from stores.file import FileConversationStore
from stores.file_ingress import FileIngressLog
from stores.memory import InMemoryConversationStore, InMemoryIngressLog

if TYPE_CHECKING:
    from stores.dynamodb import DynamoDBConversationStore, DynamoDBIngressLog

__all__ = [
    "ConflictError",
    "ConversationStore",
    "DynamoDBConversationStore",
    "DynamoDBIngressLog",
    "FileConversationStore",
    "FileIngressLog",
    "InMemoryConversationStore",
    "InMemoryIngressLog",
    "IngressLog",
    "Record",
    "StoreError",
    "build_stores",
]

_LAZY = frozenset({"DynamoDBConversationStore", "DynamoDBIngressLog"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from stores import dynamodb

        return getattr(dynamodb, name)
    raise AttributeError(f"module 'stores' has no attribute {name!r}")
