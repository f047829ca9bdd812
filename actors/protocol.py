"""The messages actors exchange: small frozen dataclasses named for what happened or what is asked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

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
    "ReplyStream",
    "ReplyTarget",
    "StreamingReplyChannel",
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


class ReplyStream(Protocol):
    """A live preview of one answer while the model writes it (Telegram: drafts, or a message edited
    as it grows). Previews are best effort and never the answer: `finish` delivers the answer."""

    def changed(self) -> None:
        """The text grew (or was written anew): show it when the pace allows. Never blocks or raises."""
        ...

    def tool_boundary(self) -> None:
        """The model called tools, which may take a while: show what it wrote so far now."""
        ...

    def answered(self) -> None:
        """The model has written its whole answer, which `finish` delivers next: no preview is worth
        sending now (one in flight finishes). Never blocks or raises."""
        ...

    def finish(self, reply: Reply) -> Awaitable[None]:
        """Deliver the finished reply (or a notice) in place of the preview, as `ReplyChannel.deliver`
        would (split, formatted); raises DeliveryFailed like it. Ends the preview."""
        ...

    def aclose(self) -> Awaitable[None]:
        """End the preview without an answer (the turn failed); what it showed stays. Idempotent."""
        ...


PreviewMessages = Callable[[tuple[int, ...]], Awaitable[None]]
"""Hears the ids of the messages that now show a preview, to record them before going on."""


@runtime_checkable
class StreamingReplyChannel(Protocol):
    """A ReplyChannel that can also show answers as they are written."""

    def open_stream(
        self,
        target: ReplyTarget,
        text: Callable[[], str],
        *,
        shown: tuple[int, ...] = (),
        on_messages: PreviewMessages | None = None,
        on_visible: Callable[[], None] | None = None,
    ) -> ReplyStream | None:
        """A stream for one answer to `target`, or None when answers go whole (streaming is off).

        `text()` is the answer so far, in Markdown; `shown` are messages an earlier run of the same
        turn left showing a preview (to finish by editing them); `on_messages` hears of messages made
        for the preview; `on_visible` is called once, when text first becomes visible to the user.
        """
        ...
