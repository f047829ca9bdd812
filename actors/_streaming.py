"""Streamed answers in a conversation actor: the text a turn writes, shown live through the channel's
ReplyStream (when it has one) and delivered through it; and the actor's /stop, out of band."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar

import structlog

from actors import texts
from actors._stopping import StopSwitch, TurnStopped, stopped_text
from actors.protocol import (
    ConversationMessage,
    DeliveryFailed,
    ReminderDue,
    Reply,
    ReplyChannel,
    ReplyStream,
    ReplyTarget,
    StreamingReplyChannel,
    UserMessage,
)
from llm import AssistantRecord, NoticeRecord, PreviewRecord, Record, RecordSink, TurnContext, TurnRecord

__all__ = ["TurnOutput", "TurnStopped", "TurnStreams"]

log = structlog.get_logger(__name__)

T = TypeVar("T")


class TurnStreams:
    """A conversation actor's streamed answers and /stop (what the actor keeps of them is here).

    `begin` makes the output of a turn, or of a delivery, with its live preview if the channel
    streams; while it is open, `deliver` finishes that preview with the answer. `interrupt` takes
    a /stop (see StopSwitch); `settle` answers a held one once nothing is left for it to cover.
    `append` records (the actor's write-through append): preview message ids are recorded with it.
    """

    def __init__(
        self, conversation_id: str, channel: ReplyChannel, append: Callable[[Record], Awaitable[None]]
    ) -> None:
        self._conversation_id = conversation_id
        self._channel = channel
        self._append = append
        self.stops = StopSwitch()
        self.current: TurnOutput | None = None

    def begin(self, message: ConversationMessage, shown: tuple[int, ...] = ()) -> TurnOutput:
        """The output of the turn (or delivery) of `message`; `shown` are preview messages a crash left."""
        output = TurnOutput(self, message)
        channel = self._channel
        if isinstance(channel, StreamingReplyChannel):
            record = partial(self._record_preview, message.update_id, message.target)
            output.stream = channel.open_stream(
                message.target, output.text, shown=shown, on_messages=record, on_visible=output.visible
            )
        self.current = output
        return output

    async def _record_preview(self, update_id: int | None, target: ReplyTarget, message_ids: tuple[int, ...]) -> None:
        await self._append(PreviewRecord(message_ids=message_ids, target=target, update_id=update_id))

    async def deliver(self, reply: Reply) -> None:
        """Deliver `reply` in place of the open output's preview, or through the channel."""
        output = self.current
        stream = output.stream if output is not None else None
        if stream is not None:
            await stream.finish(reply)
        else:
            await self._channel.deliver(reply)
        if output is not None:
            output.visible()

    def interrupt(self, message: object, waiting: bool) -> bool:
        """A /stop, out of band (see StopSwitch.interrupt)."""
        taken = self.stops.interrupt(message, waiting)
        update_id = getattr(message, "update_id", None)
        log.info("turn_stop_requested", conversation_id=self._conversation_id, update_id=update_id, taken=taken)
        return taken

    async def stopped(
        self,
        message: UserMessage | ReminderDue,
        output: TurnOutput,
        recorded: AssistantRecord | NoticeRecord | None,
        deliver: Callable[[Reply], Awaitable[str]],
    ) -> str:
        """A stopped turn's answer: what it wrote, marked as stopped, recorded and delivered; or the
        answer it recorded just before the /stop landed (`recorded`)."""
        firing = message.firing_id if isinstance(message, ReminderDue) else None
        if recorded is None:
            recorded = AssistantRecord(text=stopped_text(output.text()), target=message.target)
            await self._append(dataclasses.replace(recorded, update_id=message.update_id, firing_id=firing))
        log.info("turn_stopped", written_chars=len(output.text()))
        kind: Literal["answer", "error"] = (
            "error" if isinstance(recorded, NoticeRecord) and recorded.is_error else "answer"
        )
        reply = Reply(
            self._conversation_id, recorded.text, message.target, message.update_id, kind=kind, firing_id=firing
        )
        return await deliver(reply)

    async def settle(self) -> None:
        """End a held /stop: its update is done, answered "nothing to stop" if it stopped nothing."""
        settled = self.stops.settle()
        if settled is None:
            return
        command, stopped = settled
        if not stopped:
            try:
                notice = Reply(self._conversation_id, texts.NOTHING_TO_STOP, command.target, kind="notice")
                await self._channel.deliver(notice)
            except DeliveryFailed as exc:
                log.warning("notice_undeliverable", update_id=command.update_id, reason=exc.reason)
        if command.update_id is not None:
            await self._channel.done(command.update_id)


class TurnOutput:
    """The text of one turn as the model writes it (every step's text, a blank line apart), its
    preview (`stream`), and when text first became visible to the user.

    Deltas only append (cheap: this runs per streamed token); the text is joined when it is read,
    which a preview does a few times a second at most. Close it (or `async with` it) after the
    answer was delivered: the preview ends.
    """

    def __init__(self, streams: TurnStreams, message: ConversationMessage) -> None:
        self._streams = streams
        self._message = message
        self.stream: ReplyStream | None = None
        self._steps: list[str] = []
        self._pieces: list[str] = []
        self._text: str | None = ""
        self._started = time.perf_counter()
        self.first_ms: float | None = None
        """Milliseconds from the start until text was first visible (a preview, or the answer)."""

    def context(self, context: TurnContext) -> TurnContext:
        """The turn's context, streaming into this output."""
        return dataclasses.replace(context, on_delta=self.delta, on_retry=self.retry)

    def recorder(self, record: Callable[[TurnRecord], Awaitable[None]]) -> RecordSink:
        """`record`, which also marks the end of a step that calls tools, and is never cut short by a /stop."""

        async def recording(item: TurnRecord) -> None:
            if isinstance(item, AssistantRecord) and item.tool_calls:
                self.tool_boundary(item.text)
            elif isinstance(item, AssistantRecord) and self.stream is not None:
                self.stream.answered()  # the answer: recorded, then delivered; no preview meanwhile
            await self._streams.stops.write_through(record(item))

        return recording

    async def run(self, turn: Coroutine[Any, Any, T]) -> T:
        """Await the turn's model and tool work; TurnStopped if a /stop cuts it short (or came before)."""
        assert isinstance(self._message, (UserMessage, ReminderDue))
        return await self._streams.stops.stoppable(self._message, turn)

    def delta(self, piece: str) -> None:
        """A piece of the current step's text."""
        self._pieces.append(piece)
        self._text = None
        if self.stream is not None:
            self.stream.changed()

    def retry(self) -> None:
        """The model is asked again: the current step's text so far is void."""
        self._pieces.clear()
        self._text = None
        if self.stream is not None:
            self.stream.changed()

    def tool_boundary(self, step_text: str) -> None:
        """The step ended in tool calls: its recorded text replaces what streamed; a new step begins."""
        self._steps.append(step_text.strip())
        self._pieces.clear()
        self._text = None
        if self.stream is not None:
            self.stream.tool_boundary()

    def text(self) -> str:
        """Everything written so far, in Markdown."""
        if self._text is None:
            current = "".join(self._pieces).strip()
            self._text = "\n\n".join(part for part in (*self._steps, current) if part)
        return self._text

    def visible(self) -> None:
        """Text became visible to the user now: the first time counts."""
        if self.first_ms is None:
            self.first_ms = round((time.perf_counter() - self._started) * 1000, 2)

    async def close(self) -> None:
        """End the preview (a request in flight ends first); the output is no longer current."""
        if self._streams.current is self:
            self._streams.current = None
        if self.stream is not None:
            await self.stream.aclose()
            # The stream holds this output's methods: left linked, every turn would leave a cycle of
            # ~17 objects that only a full collection frees (hundreds of turns' worth in a burst).
            self.stream = None

    async def __aenter__(self) -> TurnOutput:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
