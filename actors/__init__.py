"""The actor system: runtime (actor, mailbox, supervisor, registry), protocol, conversation actor,
gateways, and the system that wires them.

Heavier modules (the Telegram gateway imports python-telegram-bot) load on first use, so the
console mode and the tests of the runtime do not pay for them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from actors.protocol import Command, ConversationMessage, DeliveryFailed, Reply, ReplyChannel, ReplyTarget, UserMessage
from actors.registry import ConversationRegistry
from actors.runtime import Actor, ActorStopped, MailboxFull, PoisonMessage
from actors.supervisor import Restart, Supervisor

if TYPE_CHECKING:
    from actors.conversation import ConversationActor, TurnSettings
    from actors.mcp import McpServerActor
    from actors.system import AssistantSystem
    from actors.telegram.gateway import TelegramGateway

__all__ = [
    "Actor",
    "ActorStopped",
    "AssistantSystem",
    "Command",
    "ConversationActor",
    "ConversationMessage",
    "ConversationRegistry",
    "DeliveryFailed",
    "MailboxFull",
    "McpServerActor",
    "PoisonMessage",
    "Reply",
    "ReplyChannel",
    "ReplyTarget",
    "Restart",
    "Supervisor",
    "TelegramGateway",
    "TurnSettings",
    "UserMessage",
]

_LAZY = {
    "AssistantSystem": "actors.system",
    "ConversationActor": "actors.conversation",
    "TurnSettings": "actors.conversation",
    "McpServerActor": "actors.mcp",
    "TelegramGateway": "actors.telegram.gateway",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(import_module(module), name)
