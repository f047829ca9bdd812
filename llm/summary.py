"""Summaries instead of forgetting: when what the model would see of a conversation outgrows its
context budget, the oldest part is summarised by the model into a `SummaryRecord`.

A summary is rolling: it covers the records from its `first_seq` (the first after the last reset)
to its `last_seq`, by folding the previous summary and the next oldest records into a new one. The
cut is always at a user message, so a tool call and its results are summarised together or not at
all, and the newest exchange is never summarised. `llm.context` shows the latest summary in place of
what it covers; nothing is deleted from the store.

    plan = plan_summary(history.records(), budget_tokens=16000, instructions=instructions)
    if plan is not None:
        record = await summarise(model, plan)   # LLMError if the model fails; the caller retries later
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from llm.base import ChatModel, ModelRequest
from llm.context import estimate_text_tokens, estimate_tokens, summary_message
from llm.records import (
    AssistantRecord,
    ModelMessage,
    Record,
    ResetRecord,
    SummaryRecord,
    ToolResultRecord,
    UserRecord,
)

__all__ = ["SUMMARY_INSTRUCTIONS", "SummaryPlan", "plan_summary", "summarise"]

SUMMARY_INSTRUCTIONS = (
    "You keep the memory of a conversation between a user and an assistant. Summarise the conversation "
    "below so that the assistant can continue it without the original: what the user said about "
    "themselves, facts, names, numbers, dates, decisions, preferences, open questions and tasks, and what "
    "tools found. Keep everything an earlier summary says unless the conversation corrects it. Write "
    "plain, dense sentences in the conversation's language, at most about {words} words. Output only the "
    "summary."
)
"""The summariser's instructions (`{words}`: the length asked for)."""

_KEEP_FRACTION = 2  # after a summary, the newest exchanges kept verbatim fill at most budget / this
_MAX_PART_CHARS = 2000  # a tool result or argument list is cut to this in the transcript


@dataclass(frozen=True, slots=True)
class SummaryPlan:
    """What to summarise: the previous summary (if any) and the oldest records after it, `first_seq`
    to `last_seq` (what the new summary will cover)."""

    previous: SummaryRecord | None
    records: tuple[ModelMessage, ...]
    first_seq: int
    last_seq: int
    words: int
    """How long a summary to ask for."""
    max_chars: int
    """How long a summary may be kept: a model that writes more is cut here, so that a summary never
    takes more than a quarter of the budget it was made for."""

    def request(self) -> ModelRequest:
        """The summariser's request: its instructions and the transcript as one user message."""
        parts = []
        if self.previous is not None:
            parts.append("Earlier summary:\n" + self.previous.text)
        parts.append("Conversation:\n" + "\n".join(_transcript_line(record) for record in self.records))
        return ModelRequest(SUMMARY_INSTRUCTIONS.format(words=self.words), [UserRecord(text="\n\n".join(parts))])

    def record(self, text: str) -> SummaryRecord:
        """The summary record of the model's text (its `seq` is set when it is appended)."""
        return SummaryRecord(text=text, first_seq=self.first_seq, last_seq=self.last_seq)


def plan_summary(history: Sequence[Record], budget_tokens: int, instructions: str) -> SummaryPlan | None:
    """The part of `history` to summarise, or None while what the model would see fits `budget_tokens`.

    What the model would see: the instructions, the latest summary, and the messages after what it
    covers since the last reset. When that outgrows the budget, the oldest exchanges (each from a user
    message to the next) are planned for summarising, so that the newest ones left fill at most half the
    budget; at most a budget's worth is summarised at once (a longer backlog takes several summaries).
    The newest exchange is never summarised; records without a `seq` are never planned.
    """
    previous, messages = _visible(history)
    used = estimate_text_tokens(instructions) + sum(estimate_tokens(message) for message in messages)
    if previous is not None:
        used += estimate_tokens(summary_message(previous))
    if used <= budget_tokens:
        return None
    exchanges = _exchanges(messages)
    keep_tokens = budget_tokens // _KEEP_FRACTION
    kept = 1
    kept_tokens = _tokens(exchanges[-1]) if exchanges else 0
    while kept < len(exchanges) and kept_tokens + _tokens(exchanges[-kept - 1]) <= keep_tokens:
        kept += 1
        kept_tokens += _tokens(exchanges[-kept])
    chosen: list[ModelMessage] = []
    chosen_tokens = 0
    for exchange in exchanges[: len(exchanges) - kept]:
        cost = _tokens(exchange)
        if chosen and chosen_tokens + cost > budget_tokens:
            break
        chosen.extend(exchange)
        chosen_tokens += cost
    seqs = [message.seq for message in chosen]
    if not seqs or None in seqs:
        return None
    first_seq, last_seq = seqs[0], seqs[-1]
    if previous is not None:
        first_seq = previous.first_seq
    if first_seq is None or last_seq is None:
        return None
    words = max(100, min(500, budget_tokens // 16))
    return SummaryPlan(previous, tuple(chosen), first_seq, last_seq, words, max_chars=budget_tokens)


async def summarise(model: ChatModel, plan: SummaryPlan) -> SummaryRecord | None:
    """Ask the model for the summary of `plan`; None if it answered with nothing.

    Raises what the model raises (LLMError); cancellation propagates.
    """
    reply = await model.complete(plan.request())
    text = reply.text.strip()
    if len(text) > plan.max_chars:
        text = text[: plan.max_chars].rstrip() + " [...]"
    return plan.record(text) if text else None


def _visible(history: Sequence[Record]) -> tuple[SummaryRecord | None, list[ModelMessage]]:
    """The latest summary and the messages after what it covers, since the last reset, in order."""
    summary: SummaryRecord | None = None
    messages: list[ModelMessage] = []
    for record in reversed(history):
        if summary is not None and record.seq is not None and record.seq <= summary.last_seq:
            break
        if isinstance(record, ResetRecord):
            break
        if isinstance(record, SummaryRecord):
            summary = summary or record
        elif isinstance(record, UserRecord | AssistantRecord | ToolResultRecord):
            messages.append(record)
    messages.reverse()
    return summary, messages


def _exchanges(messages: list[ModelMessage]) -> list[list[ModelMessage]]:
    """The messages cut before each user message (what precedes the first one is an exchange too)."""
    exchanges: list[list[ModelMessage]] = []
    for message in messages:
        if isinstance(message, UserRecord) or not exchanges:
            exchanges.append([])
        exchanges[-1].append(message)
    return exchanges


def _tokens(messages: Sequence[ModelMessage]) -> int:
    return sum(estimate_tokens(message) for message in messages)


def _transcript_line(message: ModelMessage) -> str:
    match message:
        case UserRecord():
            return "User: " + message.text
        case AssistantRecord():
            lines = [f"Assistant: {message.text}"] if message.text.strip() else []
            for call in message.tool_calls:
                arguments = json.dumps(call.arguments, ensure_ascii=False, default=str) if call.arguments else "{}"
                lines.append(f"Assistant used the tool {call.name} with {_cut(arguments)}")
            return "\n".join(lines)
        case ToolResultRecord():
            outcome = "failed" if message.is_error else "answered"
            return f"Tool {message.name} {outcome}: {_cut(message.content)}"


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_PART_CHARS else text[:_MAX_PART_CHARS] + " [...]"
