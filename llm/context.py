"""What the model sees of a conversation: the one place that decides it, with a cheap token estimate."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from llm.attachments import images_of, user_text
from llm.record_json import record_to_json
from llm.records import (
    AssistantRecord,
    ModelMessage,
    Record,
    ReminderFiredRecord,
    ResetRecord,
    SummaryRecord,
    ToolCall,
    ToolResultRecord,
    UserRecord,
)

__all__ = [
    "INTERRUPTED_TOOL_RESULT",
    "REMINDER_SENT",
    "REMINDER_TASK",
    "SUMMARY_HEADER",
    "ImageCost",
    "anthropic_image_tokens",
    "estimate_stored_tokens",
    "estimate_text_tokens",
    "estimate_tokens",
    "forget_estimates",
    "openai_image_tokens",
    "summary_message",
    "trim_history",
]

# The estimate: one token per 4 characters (rounded up), which is what OpenAI quotes for English text
# and errs on the generous side for code and JSON; plus a fixed overhead per message for the role and
# framing tokens the APIs add. Tool calls count as their JSON; an image a tool returned counts as a flat
# 1600 tokens (Anthropic's cost of a ~1.15 megapixel image, the largest it keeps unscaled), never as its
# base64; an image the user sent counts by the provider's own formula for its size (`ImageCost`).
_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4
_IMAGE_TOKENS = 1600

_ANCHOR_STEPS = (64, 16, 4)
"""Where a trimmed history may start, coarsest first: at a user message whose `seq` is past a multiple of
one of these (see `_stable_start`)."""

INTERRUPTED_TOOL_RESULT = "No result: this tool call was interrupted before it finished. Call it again if needed."
"""The text of the tool result made up for a call whose result was never recorded (a crash mid-step)."""

REMINDER_TASK = (
    "(This is not a message from the user: it is a task the user scheduled earlier, due now. Carry it out, "
    "with your tools if they help, and answer with the result for the user.)\n\n{text}"
)
"""How the model sees a `run` reminder's firing: the user message its turn answers."""

REMINDER_SENT = "(Reminder sent to the user at its time:) {text}"
"""How the model sees a plain reminder's firing: something the assistant said, which needs no answer."""

SUMMARY_HEADER = (
    "[Summary of the earlier part of this conversation, written by you (the assistant) to keep it "
    "within your memory; it is not a new message from the user.]"
)
"""What the model reads before a summary's text, where the records it covers were."""


def estimate_text_tokens(text: str) -> int:
    """Tokens in a piece of text, by the estimate above (the system prompt, say)."""
    return -(-len(text) // _CHARS_PER_TOKEN)


ImageCost = Callable[[int, int], int]
"""Tokens a provider charges for an image of (width, height) pixels."""


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's formula: width * height / 750, after it scales the image to fit 1568 px and ~1.15 MP."""
    scale = min(1.0, 1568 / max(width, height, 1), math.sqrt(1_150_000 / max(1, width * height)))
    return max(1, math.ceil((width * scale) * (height * scale) / 750))


def openai_image_tokens(width: int, height: int) -> int:
    """OpenAI's tile formula (detail high or auto): fit 2048x2048, shortest side 768, 85 + 170 per 512 px tile."""
    scale = min(1.0, 2048 / max(width, height, 1))
    scaled_width, scaled_height = width * scale, height * scale
    scale = min(1.0, 768 / max(1.0, min(scaled_width, scaled_height)))
    return 85 + 170 * math.ceil(scaled_width * scale / 512) * math.ceil(scaled_height * scale / 512)


_COSTS: dict[int, tuple[ModelMessage, ImageCost, int]] = {}
"""Recent costly messages' estimates by identity (the message is held, so its id stays its own):
every turn estimates its whole history again, trimming it and planning its summary, and messages
never change. Only tool calls and attachments are costly to estimate; a plain message's estimate is
two lengths, cheaper than remembering it, and holding it would keep a burst's messages in memory."""
_COSTS_HELD = 2048


def estimate_tokens(message: ModelMessage, image_cost: ImageCost = anthropic_image_tokens) -> int:
    """Tokens one message costs, by the estimate above; images the user sent by `image_cost`."""
    if (type(message) is UserRecord and not message.attachments) or (
        type(message) is AssistantRecord and not message.tool_calls
    ):
        return _MESSAGE_OVERHEAD + estimate_text_tokens(message.text)  # most messages: as fast as a lookup
    if type(message) is ToolResultRecord:
        return _estimate_tokens(message, image_cost)  # cheap as well: two lengths and a count of images
    known = _COSTS.get(id(message))
    if known is not None and known[0] is message and known[1] is image_cost:
        return known[2]
    tokens = _estimate_tokens(message, image_cost)
    if len(_COSTS) >= _COSTS_HELD:
        _COSTS.clear()  # a busy assistant with many chats estimates again; memory stays bounded
    _COSTS[id(message)] = (message, image_cost, tokens)
    return tokens


def forget_estimates() -> None:
    """Drop the remembered estimates: once idle conversations are evicted, their messages would
    otherwise live on here, scattered over the memory the burst that brought them took."""
    _COSTS.clear()


def _estimate_tokens(message: ModelMessage, image_cost: ImageCost) -> int:
    match message:
        case UserRecord():
            if not message.attachments:
                return _MESSAGE_OVERHEAD + estimate_text_tokens(message.text)
            images = images_of(message)
            shown = {image.file_id for image in images}
            tokens = _MESSAGE_OVERHEAD + estimate_text_tokens(user_text(message, shown))
            return tokens + sum(image_cost(image.width or 1568, image.height or 1176) for image in images)
        case AssistantRecord():
            tokens = _MESSAGE_OVERHEAD + estimate_text_tokens(message.text)
            if message.tool_calls:
                calls = record_to_json(message)["tool_calls"]
                tokens += estimate_text_tokens(json.dumps(calls, ensure_ascii=False, default=str))
            return tokens
        case ToolResultRecord():
            tokens = _MESSAGE_OVERHEAD + estimate_text_tokens(message.content) + estimate_text_tokens(message.name)
            return tokens + _IMAGE_TOKENS * len(message.images)


def estimate_stored_tokens(data: Mapping[str, Any], image_cost: ImageCost = anthropic_image_tokens) -> int:
    """`estimate_tokens` of a stored record, read off its JSON (`llm.record_json`) without decoding it
    (an activation estimates many records it may never decode); markers and malformed fields cost 0."""
    role = data.get("role")
    if data.get("type") == "reminder_fired":  # seen in its place (`_firing_message`)
        return _MESSAGE_OVERHEAD + estimate_text_tokens(REMINDER_TASK) + _text_tokens(data.get("text"))
    if role not in ("user", "assistant", "tool"):
        return 0
    tokens = _MESSAGE_OVERHEAD + _text_tokens(data.get("content"))
    if role == "assistant" and data.get("tool_calls"):
        tokens += estimate_text_tokens(json.dumps(data["tool_calls"], ensure_ascii=False, default=str))
    elif role == "tool":
        images = data.get("images")
        tokens += _text_tokens(data.get("name")) + _IMAGE_TOKENS * (len(images) if isinstance(images, list) else 0)
    elif role == "user" and isinstance(data.get("attachments"), list):
        tokens += _stored_attachment_tokens(data["attachments"], image_cost)
    return tokens


def _stored_attachment_tokens(attachments: list[Any], image_cost: ImageCost) -> int:
    """The files of a stored user record: a document by its text, an image by `image_cost` of its size."""
    tokens = 0
    for item in attachments:
        if not isinstance(item, Mapping):
            continue
        if item.get("kind") == "photo":
            width, height = item.get("width"), item.get("height")
            tokens += image_cost(width if isinstance(width, int) else 1568, height if isinstance(height, int) else 1176)
        elif item.get("kind") == "document":
            tokens += _text_tokens(item.get("text")) + 10  # and the <document name=...> lines around it
    return tokens


def _text_tokens(value: object) -> int:
    return estimate_text_tokens(value) if isinstance(value, str) else 0


def trim_history(
    history: Sequence[Record], budget_tokens: int, system: str, *, image_cost: ImageCost = anthropic_image_tokens
) -> list[ModelMessage]:
    """What the model sees of `history`: the newest part of it that fits `budget_tokens` together
    with the system prompt (images the user sent counted by `image_cost`, the provider's formula).
    Every provider sends exactly this; nothing else decides it.

    Guarantees, whatever the input:
    - only messages after the last reset are seen; markers (notices, delivered, reset) are the
      conversation's own book-keeping. The latest summary is seen in place of the records it covers
      (as a user message, `summary_message`), before the records after them; a summary that covers
      records from before the last reset is not seen. A reminder firing is seen in its place: a
      `run` one as the user message of the task (`REMINDER_TASK`), which its turn answers; a plain
      one as what the assistant said (`REMINDER_SENT`), so the model knows of it but never answers it;
    - an assistant message with tool calls and its tool results are kept or dropped together; a tool
      result without its call is dropped, and a call whose result is missing (a crash mid-step) gets a
      made-up error result (`INTERRUPTED_TOOL_RESULT`), so the providers never see a broken pair: this is
      the one place interrupted tool calls are repaired;
    - the result starts with a user message (both APIs want that; Anthropic requires it);
    - the last user message and everything after it (the turn in progress) are always kept, even if
      they alone exceed the budget;
    - once the history outgrows the budget, where it starts moves in steps, not turn by turn: the start
      is a user message at a `seq` anchor (`_stable_start`), so the prefix the model saw last turn is
      the prefix it sees now (prompt caches read it) for many turns, and at least half the budget is
      still used.
    The kept part is contiguous: an older message is never kept when a newer one was dropped. The work
    is proportional to what is kept (and the markers among it), not to the length of the history.
    """
    used = estimate_text_tokens(system)
    kept: list[list[ModelMessage]] = []  # units, newest first
    costs: list[int] = []
    in_progress = 0  # how many of `kept` belong to the turn in progress: all of them until a user message
    trimmed = False
    for unit in _units_newest_first(history):
        cost = (
            estimate_tokens(unit[0], image_cost)
            if len(unit) == 1
            else sum(estimate_tokens(message, image_cost) for message in unit)
        )
        if in_progress and used + cost > budget_tokens:
            trimmed = True
            break
        used += cost
        kept.append(unit)
        costs.append(cost)
        if not in_progress and isinstance(unit[0], UserRecord):
            in_progress = len(kept)
    # Older units are kept from a user message on; without any user message, everything is in progress.
    while in_progress and len(kept) > in_progress and not isinstance(kept[-1][0], UserRecord):
        kept.pop()
    if trimmed and len(kept) > in_progress:
        kept = kept[: _stable_start(kept, costs, in_progress, budget_tokens // 2)]
    return [message for unit in reversed(kept) for message in unit]


def summary_message(summary: SummaryRecord) -> UserRecord:
    """How the model reads a summary: a user message (both APIs accept it anywhere a user message
    may stand), under SUMMARY_HEADER."""
    return UserRecord(text=f"{SUMMARY_HEADER}\n\n{summary.text}", seq=summary.seq)


def _stable_start(kept: list[list[ModelMessage]], costs: list[int], in_progress: int, floor: int) -> int:
    """How many of `kept` (newest first, the oldest a user message) to keep so that the start is stable.

    Trimming to whatever fits would move the start with every turn, and with it the whole prompt after
    the instructions, which prompt caches then never read. Instead the start is the first user message
    whose `seq` is at or past the next multiple of a step (64 records, else 16, else 4) after the oldest
    that fits: as the conversation grows, that message stays the start until the oldest that fits
    passes it. The coarsest step that keeps at least `floor` tokens is used; histories without `seq`
    are trimmed to what fits.
    """
    oldest = kept[-1][0].seq
    if oldest is None:
        return len(kept)
    total = sum(costs[: len(kept)])  # costs may still hold units popped for not starting with a user message
    for step in _ANCHOR_STEPS:
        anchor = -(-oldest // step) * step
        dropped = 0
        # Units older than the turn in progress, oldest first; the turn's own user message ends the search.
        for index in range(len(kept) - 1, in_progress - 2, -1):
            first = kept[index][0]
            if index == in_progress - 1 or (isinstance(first, UserRecord) and (first.seq or 0) >= anchor):
                break
            dropped += costs[index]
        if total - dropped >= floor:
            return index + 1
    return len(kept)


def _units_newest_first(history: Sequence[Record]) -> Iterator[list[ModelMessage]]:
    """The messages after the last reset, newest first, in units that stay together: an assistant
    message with its tool calls' results (each call's first recorded result, or a made-up one), or any
    other single message; last, the latest summary in place of the records it covers. Tool results that
    do not follow their call directly are orphans the APIs would reject: left out."""
    summary: SummaryRecord | None = None
    for unit in _messages_newest_first(history):
        if isinstance(unit, SummaryRecord):
            summary = unit
        else:
            yield unit
    if summary is not None:
        yield [summary_message(summary)]


def _messages_newest_first(history: Sequence[Record]) -> Iterator[list[ModelMessage] | SummaryRecord]:
    """The units of `_units_newest_first` before its summary, then the summary to show (if any)."""
    results: list[ToolResultRecord] = []  # the tool results just after the message at hand, newest first
    summary: SummaryRecord | None = None
    for record in reversed(history):
        if summary is not None and record.seq is not None and record.seq <= summary.last_seq:
            break  # this and everything older is in the summary
        if isinstance(record, SummaryRecord):
            summary = summary or record  # the newest summary covers what older ones did
            continue
        if isinstance(record, ToolResultRecord):
            results.append(record)
            continue
        if isinstance(record, AssistantRecord) and record.tool_calls:
            by_call: dict[str, ToolResultRecord] = {}
            for result in reversed(results):
                by_call.setdefault(result.tool_call_id, result)
            yield [record, *(by_call.get(call.id) or _interrupted(call) for call in record.tool_calls)]
        elif isinstance(record, UserRecord | AssistantRecord):
            yield [record]
        elif isinstance(record, ReminderFiredRecord):
            yield [_firing_message(record)]
        elif isinstance(record, ResetRecord):
            if summary is not None and record.seq is not None and summary.first_seq <= record.seq:
                summary = None  # it tells of what the reset put out of sight
            break
        else:
            continue  # a marker between a call's results would not separate them from their call
        results = []
    if summary is not None:
        yield summary


def _interrupted(call: ToolCall) -> ToolResultRecord:
    return ToolResultRecord(tool_call_id=call.id, name=call.name, content=INTERRUPTED_TOOL_RESULT, is_error=True)


def _firing_message(record: ReminderFiredRecord) -> UserRecord | AssistantRecord:
    if record.run:
        return UserRecord(text=REMINDER_TASK.format(text=record.text), firing_id=record.firing_id, seq=record.seq)
    return AssistantRecord(text=REMINDER_SENT.format(text=record.text), firing_id=record.firing_id, seq=record.seq)
