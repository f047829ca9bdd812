"""The actor system: runtime (actor, mailbox, supervisor, registry), protocol, and the actors:
conversation and MCP server.

The conversation actor imports the turn loop and stores; it loads on first use, so the tests of
the runtime do not pay for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from actors.protocol import Command, ConversationMessage, DeliveryFailed, Reply, ReplyChannel, ReplyTarget, UserMessage
from actors.registry import ConversationRegistry
from actors.runtime import Actor, ActorStopped, MailboxFull, PoisonMessage
from actors.supervisor import Restart, Supervisor

if TYPE_CHECKING:
    from actors._conversation_parts import TurnSettings
    from actors.conversation import ConversationActor
    from actors.mcp import McpServerActor

__all__ = [
    "Actor",
    "ActorStopped",
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
    "TurnSettings",
    "UserMessage",
]

_LAZY = {
    "ConversationActor": "actors.conversation",
    "TurnSettings": "actors._conversation_parts",
    "McpServerActor": "actors.mcp",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(import_module(module), name)
