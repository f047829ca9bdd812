"""The conversation actor's small parts: its settings, the metrics it reports, and the records and
replies it makes from messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from actors.protocol import Reply, ReplyTarget, UserMessage
from llm import AssistantRecord, NoticeRecord, UserRecord

__all__ = ["TurnMetrics", "TurnSettings"]


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """What a turn needs beyond its model and tools."""

    system_prompt: str
    max_steps: int = 8
    context_tokens: int = 16000
    reply_within_seconds: float = 45.0
    """The deadline of a message's turn, from its arrival: past it, the user is told it took too long."""


class TurnMetrics(Protocol):
    """The metrics a conversation reports (ops.metrics.Metrics implements it)."""

    def turn(
        self, latency_ms: float, *, conversation_id: str, steps: int, ok: bool, first_text_ms: float | None = None
    ) -> None: ...


def _last_only(record: dict[str, Any]) -> bool:
    """`stop_at` that reads the newest record only."""
    return True


def _seq_after(stored: list[dict[str, Any]]) -> int:
    """The `seq` of the next record: the stores number records, so this is read off their JSON."""
    return int(stored[-1]["seq"]) + 1 if stored else 0


def _user_record(message: UserMessage) -> UserRecord:
    return UserRecord(
        text=message.text,
        attachments=message.attachments,
        user_id=message.user_id,
        target=message.target,
        ts=time.time(),
        update_id=message.update_id,
    )


def _reply(conversation_id: str, answer: AssistantRecord | NoticeRecord, target: ReplyTarget) -> Reply:
    """The reply an answer recorded before a restart still owes (to where it was recorded for)."""
    if isinstance(answer, NoticeRecord):
        kind: Literal["answer", "notice", "error"] = "error" if answer.is_error else "notice"
    else:
        kind = "answer"
    return Reply(conversation_id, answer.text, answer.target or target, answer.update_id, kind=kind)
