"""Reminder firings in a conversation's records: their JSON, and what the model sees of them."""

from __future__ import annotations

from llm import AssistantRecord, ReminderFiredRecord, ReplyTarget, UserRecord, record_from_json, record_to_json
from llm.context import REMINDER_SENT, REMINDER_TASK, trim_history

FIRING = "a1b2c3d4@2026-05-01T07:00:00Z"


def test_a_firing_record_keeps_its_id_target_and_run_flag_in_json() -> None:
    task = ReminderFiredRecord(text="summarise the news", target=ReplyTarget(42, 7), run=True, firing_id=FIRING, seq=3)
    data = record_to_json(task)
    assert data == {
        "type": "reminder_fired",
        "text": "summarise the news",
        "run": True,
        "chat_id": 42,
        "thread_id": 7,
        "firing_id": FIRING,
        "seq": 3,
    }
    assert record_from_json(data) == task
    plain = ReminderFiredRecord(text="call the bank", firing_id=FIRING)
    assert "run" not in record_to_json(plain)
    assert record_from_json(record_to_json(plain)) == plain


def test_the_model_sees_a_task_as_the_users_request_and_a_plain_reminder_as_said() -> None:
    history = [
        UserRecord(text="hi", update_id=1),
        AssistantRecord(text="hello", update_id=1),
        ReminderFiredRecord(text="call the bank", firing_id="p@2026-05-01T07:00:00Z"),
        ReminderFiredRecord(text="summarise the news", run=True, firing_id=FIRING),
    ]
    seen = trim_history(history, 10_000, "system")
    assert [(type(message).__name__, message.text) for message in seen] == [
        ("UserRecord", "hi"),
        ("AssistantRecord", "hello"),
        ("AssistantRecord", REMINDER_SENT.format(text="call the bank")),
        ("UserRecord", REMINDER_TASK.format(text="summarise the news")),
    ]
    # The task is the turn in progress: kept even when nothing else fits.
    assert [message.text for message in trim_history(history, 1, "system")] == [
        REMINDER_TASK.format(text="summarise the news")
    ]
