"""The messages actors exchange: small frozen dataclasses named for what happened or what is asked."""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from actors.commands import CommandName
from llm.records import Attachment, ReplyTarget

__all__ = [
    "Command",
    "ConversationMessage",
    "DeliveryFailed",
    "FiringOutcome",
    "ReminderDue",
    "Reply",
    "ReplyChannel",
    "ReplyTarget",
    "UserMessage",
]


@dataclass(frozen=True, slots=True)
class UserMessage:
    """A user wrote text the assistant should answer (or sent files: voice, photos, documents)."""

    conversation_id: str
    text: str
    target: ReplyTarget
    update_id: int | None = None
    """Telegram's update id: identifies the message across crashes and replays. None in the console."""
    user_id: int | None = None
    received_at: float | None = None
    """When this process received it, on the event loop's clock (`loop.time()`): the deadline of its
    answer counts from here. None when unknown (the turn's start counts then)."""
    attachments: tuple[Attachment, ...] = ()
    """The files sent with it, as the channel names them (kind, file_id, size); what they say is read
    by the conversation (`actors.media`) before the message is recorded. `text` is then their caption."""


@dataclass(frozen=True, slots=True)
class Command:
    """A user sent one of the bot's commands."""

    conversation_id: str
    name: CommandName
    target: ReplyTarget
    update_id: int | None = None
    user_id: int | None = None
    args: str = ""
    """What the user wrote after the command word (`/forget 3f2a` has args `3f2a`), stripped."""


@dataclass(frozen=True, slots=True)
class ReminderDue:
    """A reminder's firing is due in this conversation (the scheduler tells it, like a message).

    The conversation records it by `firing_id` as it records a message by `update_id`, so a firing
    told again after a crash is sent at most once more (only if the crash fell between Telegram
    accepting it and the store recording it). Its answer (to `ask`) is a `FiringOutcome`.
    """

    conversation_id: str
    firing_id: str
    """The reminder's id and due time (`stores.firing_id`)."""
    text: str
    target: ReplyTarget
    user_id: int | None
    """Who made the reminder: a `run` reminder acts for them (their tools, zone and budget)."""
    run: bool = False
    """The text is a task to carry out with the model and tools; else it is sent as written."""
    late: str = ""
    """A note that the firing is late and when it was due (the assistant was stopped); empty if on time."""
    received_at: float | None = None
    """When the scheduler told it (the loop's clock), from which its turn's deadline counts; None: from
    when its turn starts."""

    @property
    def update_id(self) -> None:
        """A firing has no Telegram update: it is known by `firing_id`."""
        return None


FiringOutcome = Literal["sent", "duplicate", "undeliverable"]
"""What became of a `ReminderDue`: sent (or its turn answered and delivered), already sent before,
or it can never be delivered (the chat blocked the bot or is gone)."""

ConversationMessage = UserMessage | Command | ReminderDue


@dataclass(frozen=True, slots=True)
class Reply:
    """Text for the user, in Markdown; the gateway formats it for its medium."""

    conversation_id: str
    text: str
    target: ReplyTarget
    update_id: int | None = None
    kind: Literal["answer", "notice", "error"] = "answer"
    firing_id: str | None = None
    """The reminder firing this answers, where a reminder caused it (then `update_id` is None)."""


class DeliveryFailed(Exception):
    """A reply can never be delivered (the chat is gone, the bot was blocked). Retrying is pointless."""

    def __init__(self, conversation_id: str, reason: str) -> None:
        super().__init__(f"cannot deliver to {conversation_id}: {reason}")
        self.conversation_id = conversation_id
        self.reason = reason


class ReplyChannel(Protocol):
    """What a conversation actor needs from its gateway."""

    def deliver(self, reply: Reply) -> Awaitable[None]:
        """Send the reply; returns once the medium accepted all of it. Transient failures are retried
        inside; raises DeliveryFailed when it can never be delivered."""
        ...

    def typing(self, target: ReplyTarget) -> AbstractAsyncContextManager[None]:
        """Show that the assistant is working while the block runs."""
        ...

    def done(self, update_id: int) -> Awaitable[None]:
        """The update is fully handled (answered and delivered, or given up)."""
        ...
