"""Every record of a conversation, as one typed union of frozen dataclasses.

A conversation is a list of records, each numbered by `seq` when it is appended. The messages a
chat model reads are `UserRecord`, `AssistantRecord` and `ToolResultRecord` (`ModelMessage`);
the markers say what happened around them. Which records the model sees is decided in one place,
`llm.context`; their JSON form (what the stores keep) is defined in one place, `llm.record_json`.
In code the class is the one discriminator: `match record: case UserRecord(): ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "AssistantRecord",
    "Attachment",
    "AttachmentKind",
    "DeliveredRecord",
    "Image",
    "Marker",
    "ModelMessage",
    "NoticeRecord",
    "PreviewRecord",
    "Record",
    "ReminderFiredRecord",
    "ReplyTarget",
    "ResetRecord",
    "SummaryRecord",
    "ToolCall",
    "ToolResultRecord",
    "TurnRecord",
    "Usage",
    "UserRecord",
]


# -- the parts records are made of -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where answers to a conversation go."""

    chat_id: int
    message_thread_id: int | None = None
    """The forum topic, in supergroups with topics."""
    reply_to_message_id: int | None = None
    """Set in groups, so the answer quotes the message it answers."""


AttachmentKind: TypeAlias = Literal["photo", "voice", "audio", "document"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the user sent, kept by Telegram's `file_id` so that a replay need not have it sent again."""

    kind: AttachmentKind
    file_id: str
    mime_type: str = ""
    size: int | None = None
    """Bytes, as Telegram reported them."""
    file_name: str = ""
    text: str = ""
    """What the file said: a voice message's transcript, a document's extracted text."""
    width: int | None = None
    """Pixels, for an image: what the model is shown (after scaling), so its token cost is known."""
    height: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool. `arguments` is None when the model sent arguments that are not a JSON object;
    `raw_arguments` keeps what it sent so the error can be explained back to it."""

    id: str
    name: str
    arguments: Mapping[str, Any] | None
    raw_arguments: str = ""


@dataclass(frozen=True, slots=True)
class Image:
    """An image a tool returned."""

    mime_type: str
    data_base64: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one model call cost, as the provider reported them.

    `input_tokens` counts every input token, including those the prompt cache served
    (`cache_read_tokens`) or stored (`cache_write_tokens`), which providers price differently.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


# -- the records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Stamped:
    """What every record carries besides its content."""

    seq: int | None = None
    """Its number in the conversation: None until the conversation appends it."""
    update_id: int | None = None
    """The Telegram update that caused it; a replay of that update is recognised by it."""
    firing_id: str | None = None
    """The reminder firing that caused it (reminder id and due time), recorded like an update id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRecord(_Stamped):
    """What the user wrote, and the files they sent with it."""

    text: str
    attachments: tuple[Attachment, ...] = ()
    user_id: int | None = None
    target: ReplyTarget | None = None
    ts: float | None = None
    """When it was received (Unix seconds)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantRecord(_Stamped):
    """What the model answered: text, and the tools it called (none in a turn's final answer)."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    """What the model call that made it cost; None in records written before usage was kept."""
    model: str = ""
    """The model that answered."""
    target: ReplyTarget | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultRecord(_Stamped):
    """What a tool answered to one call; failures and timeouts are results with `is_error`."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeRecord(_Stamped):
    """An answer that is not the model's (help, reset, a failure), kept so that a replay delivers it again."""

    text: str
    is_error: bool = False
    """It tells of a failure, rather than informs."""
    target: ReplyTarget | None = None
    reason: str = ""
    """Why it was given, where the conversation acts on it later (`images_refused`: the model cannot see images)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveredRecord(_Stamped):
    """The answer to `update_id` (or `firing_id`) reached the user, or never will (`dead_letter`)."""

    dead_letter: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetRecord(_Stamped):
    """The user started afresh: the model sees nothing before it; the store keeps the rest as an archive."""

    target: ReplyTarget | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryRecord(_Stamped):
    """A summary of the records `first_seq` to `last_seq` (inclusive), for the model to read in their place."""

    text: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderFiredRecord(_Stamped):
    """A reminder fell due in this conversation. `firing_id` identifies the firing as `update_id` a message."""

    text: str
    target: ReplyTarget | None = None
    run: bool = False
    """The text is a task the assistant carries out (a turn follows), rather than a note sent as written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewRecord(_Stamped):
    """Messages that show the answer to `update_id` while the model writes it (a group's preview,
    edited as it grows): after a restart the answer finishes them by an edit, not a second message.
    A later PreviewRecord of the same update replaces an earlier one."""

    message_ids: tuple[int, ...]
    target: ReplyTarget | None = None


ModelMessage: TypeAlias = UserRecord | AssistantRecord | ToolResultRecord
"""The records a chat model reads."""

TurnRecord: TypeAlias = AssistantRecord | ToolResultRecord
"""The records a turn makes."""

Marker: TypeAlias = NoticeRecord | DeliveredRecord | ResetRecord | SummaryRecord | ReminderFiredRecord | PreviewRecord
"""The records that say what happened around the messages."""

Record: TypeAlias = ModelMessage | Marker
"""Any record of a conversation."""
