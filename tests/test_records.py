"""Conversation records: their JSON form, and histories written before records were typed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from llm import (
    AssistantRecord,
    Attachment,
    DeliveredRecord,
    Image,
    NoticeRecord,
    PreviewRecord,
    Record,
    RecordError,
    ReminderFiredRecord,
    ReplyTarget,
    ResetRecord,
    SummaryRecord,
    ToolCall,
    ToolResultRecord,
    Usage,
    UserRecord,
    decode_history,
    record_from_json,
    record_to_json,
)
from stores import FileConversationStore
from stores.file import conversation_file_name

OLD_HISTORY = Path(__file__).parent / "fixtures" / "history_before_typed_records.jsonl"


def old_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in OLD_HISTORY.read_text(encoding="utf-8").splitlines()]


async def test_a_history_written_before_records_were_typed_loads_from_the_file_store(tmp_path: Path) -> None:
    shutil.copy(OLD_HISTORY, tmp_path / conversation_file_name("42"))
    async with FileConversationStore(tmp_path) as store:
        records = decode_history(await store.load("42"))
    assert [type(record).__name__ for record in records] == [
        "UserRecord",
        "AssistantRecord",
        "ToolResultRecord",
        "ToolResultRecord",
        "AssistantRecord",
        "DeliveredRecord",
        "ResetRecord",
        "NoticeRecord",
        "DeliveredRecord",
        "UserRecord",
        "NoticeRecord",
        "DeliveredRecord",
        "DeliveredRecord",
        "UserRecord",
        "AssistantRecord",
    ]
    assert [record.seq for record in records] == list(range(15))
    assert records[0] == UserRecord(
        text="what time is it, and 2+2?", user_id=42, target=ReplyTarget(42), ts=1767225600.25, update_id=7, seq=0
    )
    assert records[1] == AssistantRecord(
        text="Let me check.",
        tool_calls=(ToolCall("call_a", "time__now", {}), ToolCall("call_b", "calc__add", None, '{"a": 2,')),
        target=ReplyTarget(42),
        update_id=7,
        seq=1,
    )
    assert records[2] == ToolResultRecord(
        tool_call_id="call_a",
        name="time__now",
        content="12:00",
        images=(Image("image/png", "iVBORw0KGgo="),),
        update_id=7,
        seq=2,
    )
    assert isinstance(records[3], ToolResultRecord)
    assert records[3].is_error
    assert records[6] == ResetRecord(target=ReplyTarget(42), update_id=8, seq=6)
    assert records[7] == NoticeRecord(text="Starting afresh.", target=ReplyTarget(42), update_id=8, seq=7)
    assert records[10] == NoticeRecord(
        text="The model is not available right now.", is_error=True, target=ReplyTarget(42), update_id=9, seq=10
    )
    assert records[12] == DeliveredRecord(dead_letter=True, update_id=10, seq=12)
    assert isinstance(records[14], AssistantRecord)
    assert records[14].target == ReplyTarget(42, message_thread_id=5, reply_to_message_id=77)
    assert records[14].usage is None


def test_old_records_are_written_back_exactly_as_they_were() -> None:
    # The layout did not change, so a release rolled back reads what this one writes.
    for line in old_lines():
        assert record_to_json(record_from_json(line)) == line


NEW_KINDS: list[Record] = [
    UserRecord(
        text="what is in this picture?",
        attachments=(
            Attachment("photo", "AgACAgIAAxkBAAI", mime_type="image/jpeg", size=52_345),
            Attachment("voice", "AwACAgIAAxkBAAJ", mime_type="audio/ogg", size=8_000, text="hello there"),
            Attachment("document", "BQACAgIAAxkBAAK", file_name="notes.md", text="# Notes"),
        ),
        user_id=42,
        target=ReplyTarget(-100123, 7, 99),
        ts=1767225600.0,
        update_id=12,
        seq=20,
    ),
    AssistantRecord(text="A cat.", usage=Usage(1200, 35, 1000, 150), model="claude-test", update_id=12, seq=21),
    SummaryRecord(text="They talked about cats.", first_seq=0, last_seq=19, update_id=12, seq=22),
    ReminderFiredRecord(text="water the plants", target=ReplyTarget(42), firing_id="r1@2026-01-01T09:00Z", seq=23),
    AssistantRecord(text="Water the plants!", firing_id="r1@2026-01-01T09:00Z", seq=24),
    DeliveredRecord(firing_id="r1@2026-01-01T09:00Z", seq=25),
    PreviewRecord(message_ids=(501, 502), target=ReplyTarget(-100123, None, 99), update_id=13, seq=26),
]


@pytest.mark.parametrize("record", NEW_KINDS, ids=lambda record: type(record).__name__)
def test_every_kind_survives_its_json_form(record: Record) -> None:
    data = json.loads(json.dumps(record_to_json(record)))
    assert ("role" in data) != ("type" in data)
    assert record_from_json(data) == record


@pytest.mark.parametrize(
    "data",
    [
        {"seq": 1},
        {"seq": 1, "role": "system", "content": "not ours"},
        {"seq": 1, "type": "probe"},
        {"seq": 1, "role": "user", "type": "notice", "content": "both"},
        {"seq": 1, "role": "user", "content": 7},
        {"seq": 1, "role": "assistant", "content": "", "tool_calls": [{"id": "a", "name": "t", "arguments": [1]}]},
        {"seq": 1, "role": "user", "content": "x", "attachments": [{"kind": "sticker", "file_id": "f"}]},
        {"seq": 1, "type": "summary", "text": "no range"},
        {"seq": 1, "type": "reminder_fired", "text": "no firing id"},
        {"seq": True, "type": "reset"},
        {"seq": 1, "type": "preview", "message_ids": "501"},
        {"seq": 1, "type": "preview", "message_ids": [True]},
    ],
)
def test_what_is_not_a_record_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        record_from_json(data)


def test_an_unreadable_record_is_left_out_of_a_history_and_logged() -> None:
    lines = [
        {"seq": 0, "role": "user", "content": "hi"},
        {"seq": 1, "type": "from_the_future"},
        {"seq": 2, "type": "reset"},
    ]
    with capture_logs() as logs:
        records = decode_history(lines)
    assert records == [UserRecord(text="hi", seq=0), ResetRecord(seq=2)]
    assert [(line["event"], line["seq"]) for line in logs] == [("record_unreadable", 1)]
