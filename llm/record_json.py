"""The JSON form of records: what the stores keep, one object per record.

It is the layout histories have always been written in, so every stored history loads, and a
release that is rolled back still reads what a newer one wrote:

- messages carry `role`, the role both APIs use: `{"role": "user", "content": text}`,
  `{"role": "assistant", "content": text, "tool_calls": [{"id", "name", "arguments"}]}`,
  `{"role": "tool", "tool_call_id", "name", "content", "is_error", "images"}`;
- markers carry `type` instead: `notice` (with `kind`: `notice` or `error`), `delivered`, `reset`,
  `summary`, `reminder_fired`, `preview` (with `message_ids`);
- no record has both; beside them `seq`, `update_id` or `firing_id`, and the reply target as
  `chat_id`, `thread_id`, `reply_to`. Empty optional fields are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, assert_never, cast, get_args

import structlog

from llm.records import (
    AssistantRecord,
    Attachment,
    AttachmentKind,
    DeliveredRecord,
    Image,
    NoticeRecord,
    PreviewRecord,
    Record,
    ReminderFiredRecord,
    ReplyTarget,
    ResetRecord,
    SummaryRecord,
    ToolCall,
    ToolResultRecord,
    Usage,
    UserRecord,
)

__all__ = ["RecordError", "decode_history", "record_from_json", "record_to_json"]

log = structlog.get_logger(__name__)


class RecordError(ValueError):
    """A JSON object is not a record this version can read."""


def record_to_json(record: Record) -> dict[str, Any]:
    """The JSON form of a record (see the module docstring)."""
    match record:
        case UserRecord():
            data: dict[str, Any] = {"role": "user", "content": record.text}
            _put(data, "attachments", [_attachment_json(item) for item in record.attachments])
            _put(data, "ts", record.ts)
            _put(data, "user_id", record.user_id)
        case AssistantRecord():
            data = {"role": "assistant", "content": record.text}
            _put(data, "tool_calls", [_call_json(call) for call in record.tool_calls])
            _put(data, "usage", None if record.usage is None else _usage_json(record.usage))
            _put(data, "model", record.model)
        case ToolResultRecord():
            data = {"role": "tool", "tool_call_id": record.tool_call_id, "name": record.name}
            data |= {"content": record.content, "is_error": record.is_error}
            _put(data, "images", [{"mime_type": i.mime_type, "data_base64": i.data_base64} for i in record.images])
        case NoticeRecord():
            data = {"type": "notice", "kind": "error" if record.is_error else "notice", "text": record.text}
            _put(data, "reason", record.reason)
        case DeliveredRecord():
            data = {"type": "delivered"}
            _put(data, "dead_letter", record.dead_letter)
        case ResetRecord():
            data = {"type": "reset"}
        case SummaryRecord():
            data = {"type": "summary", "text": record.text, "first_seq": record.first_seq, "last_seq": record.last_seq}
        case ReminderFiredRecord():
            data = {"type": "reminder_fired", "text": record.text}
            _put(data, "run", record.run)
        case PreviewRecord():
            data = {"type": "preview", "message_ids": list(record.message_ids)}
        case _:
            assert_never(record)
    target: ReplyTarget | None = getattr(record, "target", None)
    if target is not None:
        data["chat_id"] = target.chat_id
        _put(data, "thread_id", target.message_thread_id)
        _put(data, "reply_to", target.reply_to_message_id)
    for key in ("update_id", "firing_id", "seq"):
        _put(data, key, getattr(record, key))
    return data


def record_from_json(data: Mapping[str, Any]) -> Record:
    """The record a JSON object holds. RecordError for anything else (an unknown kind, a field of
    the wrong type): the stores only promise an object with an int `seq`."""
    role, kind = data.get("role"), data.get("type")
    if role is not None and kind is not None:
        raise RecordError("a record has a role or a type, not both")
    reader = _READERS.get(f"role:{role}" if role is not None else f"type:{kind}")
    if reader is None:
        raise RecordError(f"unknown record kind: role {role!r}, type {kind!r}")
    return reader(_Fields(data))


def decode_history(items: Iterable[Mapping[str, Any]]) -> list[Record]:
    """The records of a stored history, in order. One that cannot be read is left out and logged
    (`record_unreadable`), so that a damaged history, or one a newer release wrote, still loads."""
    records: list[Record] = []
    for item in items:
        try:
            records.append(record_from_json(item))
        except RecordError as exc:
            log.warning("record_unreadable", seq=item.get("seq"), reason=str(exc))
    return records


# -- writing ----------------------------------------------------------------------------------------


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` unless the value is empty (None, "", False, an empty list)."""
    if value is not None and value != "" and value is not False and value != []:
        data[key] = value


def _attachment_json(attachment: Attachment) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": attachment.kind, "file_id": attachment.file_id}
    for key in ("mime_type", "size", "file_name", "text", "width", "height"):
        _put(data, key, getattr(attachment, key))
    return data


def _call_json(call: ToolCall) -> dict[str, Any]:
    # Arguments that were not a JSON object are kept as the model sent them, so the history shows it.
    if call.arguments is None:
        return {"id": call.id, "name": call.name, "arguments": None, "raw_arguments": call.raw_arguments}
    return {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }


# -- reading ----------------------------------------------------------------------------------------


class _Fields:
    """Typed reads of one JSON object's fields; RecordError names a field of the wrong type."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise RecordError("not an object")
        self.data: Mapping[str, Any] = data

    def text(self, key: str) -> str:
        """A text field; missing or null reads as empty (older records left empty text out)."""
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise RecordError(f"{key} is not a string")
        return value or ""

    def number(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise RecordError(f"{key} is not an integer")
        return value

    def items(self, key: str) -> list[_Fields]:
        value = self.data.get(key) or []
        if not isinstance(value, list):
            raise RecordError(f"{key} is not a list")
        return [_Fields(item) for item in value]

    def flag(self, key: str) -> bool:
        return self.data.get(key) is True

    def stamps(self) -> dict[str, Any]:
        """The fields every record has, as keyword arguments."""
        firing_id = self.data.get("firing_id")
        if firing_id is not None and not isinstance(firing_id, str):
            raise RecordError("firing_id is not a string")
        return {"seq": self.number("seq"), "update_id": self.number("update_id"), "firing_id": firing_id}

    def target(self) -> ReplyTarget | None:
        chat_id = self.number("chat_id")
        return None if chat_id is None else ReplyTarget(chat_id, self.number("thread_id"), self.number("reply_to"))


def _user(f: _Fields) -> UserRecord:
    ts = f.data.get("ts")
    if ts is not None and (not isinstance(ts, int | float) or isinstance(ts, bool)):
        raise RecordError("ts is not a number")
    attachments = tuple(_attachment(item) for item in f.items("attachments"))
    user_id, target = f.number("user_id"), f.target()
    return UserRecord(
        text=f.text("content"), attachments=attachments, user_id=user_id, target=target, ts=ts, **f.stamps()
    )


def _attachment(f: _Fields) -> Attachment:
    kind = f.text("kind")
    if kind not in get_args(AttachmentKind):
        raise RecordError(f"unknown attachment kind {kind!r}")
    return Attachment(
        cast(AttachmentKind, kind),
        f.text("file_id"),
        f.text("mime_type"),
        f.number("size"),
        f.text("file_name"),
        f.text("text"),
        f.number("width"),
        f.number("height"),
    )


def _assistant(f: _Fields) -> AssistantRecord:
    calls = tuple(_call(item) for item in f.items("tool_calls"))
    usage = None if f.data.get("usage") is None else _usage(_Fields(f.data["usage"]))
    return AssistantRecord(
        text=f.text("content"), tool_calls=calls, usage=usage, model=f.text("model"), target=f.target(), **f.stamps()
    )


def _call(f: _Fields) -> ToolCall:
    arguments = f.data.get("arguments")
    if arguments is not None and not isinstance(arguments, dict):
        raise RecordError("tool call arguments are neither an object nor null")
    return ToolCall(f.text("id"), f.text("name"), arguments, f.text("raw_arguments"))


def _usage(f: _Fields) -> Usage:
    counts = [
        f.number(key) or 0 for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    ]
    return Usage(*counts)


def _tool(f: _Fields) -> ToolResultRecord:
    images = tuple(Image(item.text("mime_type"), item.text("data_base64")) for item in f.items("images"))
    return ToolResultRecord(
        tool_call_id=f.text("tool_call_id"),
        name=f.text("name"),
        content=f.text("content"),
        is_error=f.flag("is_error"),
        images=images,
        **f.stamps(),
    )


def _summary(f: _Fields) -> SummaryRecord:
    first, last = f.number("first_seq"), f.number("last_seq")
    if first is None or last is None:
        raise RecordError("a summary without the range of records it covers")
    return SummaryRecord(text=f.text("text"), first_seq=first, last_seq=last, **f.stamps())


def _reminder_fired(f: _Fields) -> ReminderFiredRecord:
    record = ReminderFiredRecord(text=f.text("text"), target=f.target(), run=f.flag("run"), **f.stamps())
    if record.firing_id is None:
        raise RecordError("a reminder firing without its firing_id")
    return record


def _preview(f: _Fields) -> PreviewRecord:
    ids = f.data.get("message_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise RecordError("message_ids is not a list of integers")
    return PreviewRecord(message_ids=tuple(ids), target=f.target(), **f.stamps())


_READERS: dict[str, Callable[[_Fields], Record]] = {
    "role:user": _user,
    "role:assistant": _assistant,
    "role:tool": _tool,
    "type:notice": lambda f: NoticeRecord(
        text=f.text("text"),
        is_error=f.data.get("kind") == "error",
        target=f.target(),
        reason=f.text("reason"),
        **f.stamps(),
    ),
    "type:delivered": lambda f: DeliveredRecord(dead_letter=f.flag("dead_letter"), **f.stamps()),
    "type:reset": lambda f: ResetRecord(target=f.target(), **f.stamps()),
    "type:summary": _summary,
    "type:reminder_fired": _reminder_fired,
    "type:preview": _preview,
}
