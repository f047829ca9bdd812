"""The conversation actor: owns one conversation's history and runs its turns, one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

import structlog

from actors import texts
from actors._streaming import StopSwitch, TurnOutput, TurnStopped, stopped_text, write_through
from actors.protocol import (
    Command,
    ConversationMessage,
    DeliveryFailed,
    Reply,
    ReplyChannel,
    ReplyStream,
    ReplyTarget,
    StreamingReplyChannel,
    UserMessage,
)
from actors.runtime import Actor
from llm import (
    AssistantRecord,
    ChatModel,
    DeliveredRecord,
    LLMRejected,
    LLMUnavailable,
    NoticeRecord,
    PreviewRecord,
    Record,
    ResetRecord,
    Toolbox,
    TurnContext,
    TurnRecord,
    TurnResult,
    UserRecord,
    decode_history,
    record_to_json,
    run_turn,
)
from stores import ConversationStore

__all__ = ["ConversationActor", "TurnSettings"]

log = structlog.get_logger(__name__)

Stage = Literal["received", "answered", "delivered"]


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """What a turn needs beyond its model and tools."""

    system_prompt: str
    max_steps: int = 8
    context_tokens: int = 16000


class TurnMetrics(Protocol):
    """The metrics a conversation reports (ops.metrics.Metrics implements it)."""

    def turn(
        self, latency_ms: float, *, conversation_id: str, steps: int, ok: bool, first_text_ms: float | None = None
    ) -> None: ...


class ConversationActor(Actor[ConversationMessage]):
    """One conversation: loads its history once per activation and writes every record through.

    The records (see `llm.records`) each carry `seq`, and `update_id` where a Telegram update caused
    them: the user's message, the model's assistant and tool result records, and markers: a notice
    (an answer that is not the model's: help, reset, failures), delivered (the answer reached the
    user), reset (the model sees nothing before it; older records stay in the store as an archive).
    An update is answered at most once: after a restart, a replayed update that is already delivered
    is skipped, one answered but not delivered is delivered, and one only received gets its turn run
    again from the stored history.

    A StreamingReplyChannel previews answers as they are written (not records; the ids of a group's
    preview messages are: PreviewRecord, finished by an edit after a restart). /stop is `interrupt`.
    """

    def __init__(
        self,
        conversation_id: str,
        *,
        store: ConversationStore,
        model: ChatModel,
        toolbox: Toolbox,
        channel: ReplyChannel,
        settings: TurnSettings,
        mailbox_size: int = 64,
        metrics: TurnMetrics | None = None,
    ) -> None:
        super().__init__(f"conversation:{conversation_id}", mailbox_size)
        self.conversation_id = conversation_id
        self._store = store
        self._model = model
        self._toolbox = toolbox
        self._channel = channel
        self._settings = settings
        self._metrics = metrics
        self._history: list[Record] = []
        self._next_seq = 0
        self._last_update: int | None = None
        self._stage: Stage = "delivered"
        self._answer: AssistantRecord | NoticeRecord | None = None
        self._preview: tuple[int, ...] = ()
        # Preview message ids are recorded from the preview's own task, beside the turn's records:
        # one append at a time keeps `seq` and the store's order in step.
        self._appending = asyncio.Lock()
        self._stops = StopSwitch()

    # -- state ------------------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Load the history from the store (again, after a crash)."""
        # For the life of this actor's task: every line it logs names its conversation.
        structlog.contextvars.bind_contextvars(conversation_id=self.conversation_id)
        started = time.perf_counter()
        stored = await self._store.load(self.conversation_id)
        self._history = []
        self._next_seq = _seq_after(stored)
        self._last_update, self._stage, self._answer = None, "delivered", None
        self._preview = ()
        for record in decode_history(stored):
            self._track(record)
        log.debug(
            "conversation_loaded",
            records=len(stored),
            in_context=len(self._history),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _track(self, record: Record) -> None:
        """Fold one record into the in-memory state (on load and as records are made)."""
        if isinstance(record, ResetRecord):
            # The model never sees what came before a reset (llm.context), so it need not stay in memory.
            self._history = []
        self._history.append(record)
        update_id = record.update_id
        if update_id is None:
            return
        if self._last_update is None or update_id > self._last_update:
            # Update ids only grow, so the first record of a newer update starts its handling.
            self._last_update, self._stage, self._answer = update_id, "received", None
            self._preview = ()
        elif update_id < self._last_update:
            return
        if isinstance(record, PreviewRecord):
            self._preview = record.message_ids
        elif isinstance(record, NoticeRecord) or (isinstance(record, AssistantRecord) and not record.tool_calls):
            self._stage, self._answer = "answered", record
        elif isinstance(record, DeliveredRecord):
            # Delivered answers are never needed again; thousands of idle actors need not keep them.
            self._stage, self._answer = "delivered", None

    async def _append(self, record: Record) -> None:
        async with self._appending:
            record = dataclasses.replace(record, seq=self._next_seq)
            await write_through(
                self._store.append(self.conversation_id, [record_to_json(record)]), partial(self._count, record)
            )

    def _count(self, record: Record) -> None:
        self._next_seq += 1
        self._track(record)

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, message: ConversationMessage) -> str | None:
        """Answer one message; returns the answer's text (None when it was a duplicate)."""
        if self._stops.passed_by(message):
            await self._settle_stop()
        answer = await self._handle(message)
        if self._stops.request is not None and not self.queued:
            await self._settle_stop()
        return answer

    def interrupt(self, message: ConversationMessage) -> bool:
        """/stop, out of band (from the gateway's task): cancel the running turn, or hold the stop for
        the turns queued before it. False (nothing to stop) for anything else, or when idle."""
        taken = self._stops.interrupt(message, waiting=self.queued > 0)
        log.info("turn_stop_requested", conversation_id=self.conversation_id, update_id=message.update_id, taken=taken)
        return taken

    async def _settle_stop(self) -> None:
        """The held /stop has nothing left to cover: its update is done (answered if it stopped nothing)."""
        settled = self._stops.settle()
        if settled is None:
            return
        command, stopped = settled
        if not stopped:
            await self._answer_with_notice(command.update_id, command.target, texts.NOTHING_TO_STOP, "notice")
        elif command.update_id is not None:
            await self._channel.done(command.update_id)

    async def _handle(self, message: ConversationMessage) -> str | None:
        update_id = message.update_id
        with structlog.contextvars.bound_contextvars(update_id=update_id):
            if update_id is not None and self._last_update is not None:
                if update_id < self._last_update or (update_id == self._last_update and self._stage == "delivered"):
                    log.info("update_already_answered", stage=self._stage)
                    await self._channel.done(update_id)
                    return None
                if update_id == self._last_update and self._stage == "answered" and self._answer is not None:
                    log.info("update_answer_redelivered")
                    async with TurnOutput() as output:
                        # A group's preview left by the crash is finished by editing it.
                        output.stream = self._open_stream(message, output) if self._preview else None
                        return await self._deliver(_reply(self.conversation_id, self._answer, message.target), output)
                if update_id == self._last_update and isinstance(message, UserMessage):
                    # Tool calls a crash left without results are answered in what the model sees (llm.context).
                    log.info("update_turn_resumed")
                    return await self._run_turn(message)
            if isinstance(message, Command):
                return await self._command(message)
            await self._append(_user_record(message))
            return await self._run_turn(message)

    async def _command(self, command: Command) -> str:
        if command.name == "reset":
            await self._append(ResetRecord(update_id=command.update_id, target=command.target))
            text = texts.RESET
        elif command.name == "stop":
            # A /stop that reaches the mailbox (the console, or a channel without out-of-band stops).
            text = texts.NOTHING_TO_STOP
        else:
            text = texts.START if command.name == "start" else texts.HELP
        return await self._answer_with_notice(command.update_id, command.target, text, "notice")

    async def _answer_with_notice(
        self,
        update_id: int | None,
        target: ReplyTarget,
        text: str,
        kind: Literal["notice", "error"],
        output: TurnOutput | None = None,
    ) -> str:
        reply = Reply(self.conversation_id, text, target, update_id, kind=kind)
        if update_id is not None:
            await self._append(NoticeRecord(text=text, is_error=kind == "error", target=target, update_id=update_id))
        return await self._deliver(reply, output)

    def _turn_context(self, message: UserMessage) -> TurnContext:
        """What this turn asks of the model: the instructions are built here, per turn."""
        settings = self._settings
        return TurnContext(settings.system_prompt, settings.max_steps, settings.context_tokens)

    async def _run_turn(self, message: UserMessage) -> str:
        started = time.perf_counter()
        update_id, target = message.update_id, message.target
        ok, steps = False, 0
        output = TurnOutput()
        output.stream = self._open_stream(message, output)
        try:
            async with output:
                try:
                    result = await self._model_and_tools(message, output)
                except TurnStopped:
                    return await self._finish_stopped(message, output)
                except LLMUnavailable as exc:
                    log.warning("turn_failed_model_unavailable", status=exc.status, error=str(exc))
                    return await self._answer_with_notice(update_id, target, texts.MODEL_UNAVAILABLE, "error", output)
                except LLMRejected as exc:
                    log.error("turn_failed_model_rejected", status=exc.status, error=str(exc))
                    return await self._answer_with_notice(update_id, target, texts.MODEL_REJECTED, "error", output)
                ok, steps = True, result.steps
                text = await self._deliver(Reply(self.conversation_id, result.text, target, update_id), output)
                log.info(
                    "turn_finished",
                    steps=result.steps,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    model_ms=round(result.model_ms, 2),
                    tool_ms=round(result.tool_ms, 2),
                    step_limit=result.stopped_by_step_limit,
                    first_text_ms=None if output.first_text_ms is None else round(output.first_text_ms, 2),
                )
                return text
        finally:
            if self._metrics is not None:
                latency_ms, first_ms = (time.perf_counter() - started) * 1000, output.first_text_ms
                self._metrics.turn(
                    latency_ms, conversation_id=self.conversation_id, steps=steps, ok=ok, first_text_ms=first_ms
                )

    async def _model_and_tools(self, message: UserMessage, output: TurnOutput) -> TurnResult:
        """The model and its tool calls, streaming into `output`; TurnStopped if a /stop cut them short."""

        async def record(item: TurnRecord) -> None:
            if isinstance(item, AssistantRecord):
                item = dataclasses.replace(item, target=message.target)
                if item.tool_calls:
                    output.tool_boundary(item.text)
            await self._append(dataclasses.replace(item, update_id=message.update_id))

        if self._stops.covers(message):
            raise TurnStopped  # the /stop came before this turn could start (or before a crash ended it)
        context = dataclasses.replace(self._turn_context(message), on_delta=output.delta, on_retry=output.retry)
        try:
            with self._stops.running():
                async with self._channel.typing(message.target):
                    return await run_turn(self._model, self._toolbox, context, history=self._history, record=record)
        except asyncio.CancelledError:
            if self._stops.consume_cancel():
                raise TurnStopped from None
            raise

    async def _finish_stopped(self, message: UserMessage, output: TurnOutput) -> str:
        """Record what the stopped turn wrote, marked as stopped, and send it; or, if its answer was
        recorded just before the /stop landed, send that."""
        self._stops.stopped_any = True
        update_id = message.update_id
        answered = update_id is not None and update_id == self._last_update and self._stage == "answered"
        if answered and self._answer is not None:
            reply = _reply(self.conversation_id, self._answer, message.target)
        else:
            text = stopped_text(output.text())
            await self._append(AssistantRecord(text=text, target=message.target, update_id=update_id))
            reply = Reply(self.conversation_id, text, message.target, update_id)
        log.info("turn_stopped", written_chars=len(output.text()))
        return await self._deliver(reply, output)

    def _open_stream(self, message: ConversationMessage, output: TurnOutput) -> ReplyStream | None:
        """A live preview of this answer, if the channel streams; it finishes the preview messages an
        earlier run of the same update left (recorded in PreviewRecord)."""
        channel = self._channel
        if not isinstance(channel, StreamingReplyChannel):
            return None
        update_id = message.update_id
        shown = self._preview if update_id is not None and update_id == self._last_update else ()
        record = partial(self._record_preview, update_id, message.target)
        return channel.open_stream(
            message.target, output.text, shown=shown, on_messages=record, on_visible=output.visible
        )

    async def _record_preview(self, update_id: int | None, target: ReplyTarget, message_ids: tuple[int, ...]) -> None:
        await self._append(PreviewRecord(message_ids=message_ids, target=target, update_id=update_id))

    async def _deliver(self, reply: Reply, output: TurnOutput | None = None) -> str:
        if not reply.text.strip():
            # Telegram refuses an empty message; the user must still hear back.
            reply = dataclasses.replace(reply, text=texts.EMPTY_ANSWER)
        stream = output.stream if output is not None else None
        try:
            if stream is not None:
                await stream.finish(reply)
            else:
                await self._channel.deliver(reply)
            if output is not None:
                output.visible()
        except DeliveryFailed as exc:
            log.error("reply_undeliverable", reason=exc.reason)
        if reply.update_id is not None:
            await self._append(DeliveredRecord(update_id=reply.update_id))
            await self._channel.done(reply.update_id)
        return reply.text

    async def on_dead_letter(self, message: ConversationMessage, error: BaseException) -> None:
        """Tell the user the message was skipped, and mark it handled so a replay skips it too."""
        reply = Reply(self.conversation_id, texts.DEAD_LETTER, message.target, message.update_id, kind="error")
        stream = self._open_stream(message, TurnOutput())  # it replaces a preview the failed turn left
        try:
            await (stream.finish(reply) if stream is not None else self._channel.deliver(reply))
        finally:
            if message.update_id is not None:
                # The failure may have struck half-way through an append: number from the store.
                self._next_seq = _seq_after(await self._store.load(self.conversation_id))
                marker = DeliveredRecord(dead_letter=True, update_id=message.update_id, seq=self._next_seq)
                await self._store.append(self.conversation_id, [record_to_json(marker)])
                self._next_seq += 1
                await self._channel.done(message.update_id)


def _seq_after(stored: list[dict[str, Any]]) -> int:
    """The `seq` of the next record: the stores number records, so this is read off their JSON."""
    return int(stored[-1]["seq"]) + 1 if stored else 0


def _user_record(message: UserMessage) -> UserRecord:
    return UserRecord(
        text=message.text, user_id=message.user_id, target=message.target, ts=time.time(), update_id=message.update_id
    )


def _reply(conversation_id: str, answer: AssistantRecord | NoticeRecord, target: ReplyTarget) -> Reply:
    """The reply an answer recorded before a restart still owes (to where it was recorded for)."""
    if isinstance(answer, NoticeRecord):
        kind: Literal["answer", "notice", "error"] = "error" if answer.is_error else "notice"
    else:
        kind = "answer"
    return Reply(conversation_id, answer.text, answer.target or target, answer.update_id, kind=kind)
