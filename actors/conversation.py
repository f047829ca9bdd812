"""The conversation actor: owns one conversation's history and runs its turns, one at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Literal
from zoneinfo import ZoneInfo

import structlog

from actors import texts
from actors._conversation_parts import TurnMetrics, TurnSettings, _last_only, _reply, _seq_after, _user_record
from actors._firings import FiringLedger, ReminderDue, ReminderFirings
from actors._ledger import UpdateLedger
from actors._parking import Parking, RetryParked
from actors._store_faults import Inbox, StoreFaults
from actors._streaming import TurnStopped, TurnStreams
from actors._weak import weakly
from actors._writes import RecordWrites
from actors.accounting import ACCOUNTING_COMMANDS, Accounting, budget_notice, turn_done, turn_fields, turn_model
from actors.memory_commands import MEMORY_COMMANDS, answer_memory_command
from actors.protocol import Command, ConversationMessage, DeliveryFailed, Reply, ReplyChannel, ReplyTarget, UserMessage
from actors.runtime import Actor
from actors.summaries import Summariser
from actors.turn_setup import TurnSetup, turn_context
from actors.usage import BudgetExhausted
from llm import (
    AssistantRecord,
    ChatModel,
    DeliveredRecord,
    LLMRejected,
    LLMUnavailable,
    NoticeRecord,
    Record,
    ResetRecord,
    Toolbox,
    TurnContext,
    TurnRecord,
    TurnTimedOut,
    decode_history,
    record_to_json,
    run_turn,
)
from llm.history import History, VisibleStart
from ops.backoff import Backoff
from stores import ConflictError, ConversationStore, StoreError
from tools.builtin import Toolkit
from tools.builtin_reminders import ReminderTools

__all__ = ["ConversationActor", "TurnMetrics", "TurnSettings"]

log = structlog.get_logger(__name__)

HISTORY_CAP_FACTOR = 2
"""An active conversation holds at most this many context budgets of records (llm.history.History)."""
INLINE_DECODE_RECORDS = 32
"""Histories of at most this many records are decoded on the event loop when loaded (~0.3 ms): a
thread hop costs more CPU than that, and conversations that come back after an eviction are short."""


class ConversationActor(RecordWrites, ReminderFirings, StoreFaults, Actor[Inbox]):
    """One conversation: loads its history once per activation and writes every record through.

    The records (see `llm.records`) each carry `seq`, and `update_id` where a Telegram update caused
    them: the user's message, the model's assistant and tool result records, and markers: a notice
    (an answer that is not the model's: help, reset, failures), delivered (the answer reached the
    user), reset (the model sees nothing before it; older records stay in the store as an archive),
    summary (the model reads it in place of the older records it covers, see `Summariser`).
    An activation reads only what the model may still see (`ConversationStore.load_recent`), and holds
    at most HISTORY_CAP_FACTOR context budgets of it (`llm.history.History`).
    An update is answered at most once: after a restart, a replayed update that is already delivered
    is skipped, one answered but not delivered is delivered, and one only received gets its turn run
    again from the stored history. Which it is, the conversation's own records say (`UpdateLedger`).
    A reminder's firing (`ReminderDue`) is handled alike, by its firing id (`actors._firings`).

    When the store fails (StoreError, other than a conflict), the message is parked with the ones
    after it, the user is told once, its update stays pending, and the actor retries with backoff
    until the store works again, then answers them in order (`Parking`, `StoreFaults`).

    Answers are shown as they are written when the channel streams, and /stop comes out of band
    (`interrupt`): see `TurnStreams`. A group's preview messages are recorded (PreviewRecord), so
    that after a crash the answer finishes them by an edit.
    """

    _pipelined = True
    """An answer's delivered marker is written while the next message is taken (`_record_behind`)."""

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
        setup: TurnSetup | None = None,
        backoff: Backoff | None = None,
        reminders: ReminderTools | None = None,
        accounting: Accounting | None = None,
    ) -> None:
        super().__init__(f"conversation:{conversation_id}", mailbox_size)
        self.conversation_id = conversation_id
        self._store = store
        self._model = model
        self._toolbox = toolbox
        self._channel = channel
        self._settings = settings
        self._metrics = metrics
        self._accounting = accounting  # usage, the budget and the chat's model (None: the model as given)
        # Without a shared setup (tests, embedders): the system prompt, the date and time in UTC, no facts.
        self._setup = setup or TurnSetup(
            settings.system_prompt,
            Toolkit(toolbox),
            default_zone=ZoneInfo("UTC"),
            context_tokens=settings.context_tokens,
        )
        self._history = History(settings.context_tokens * HISTORY_CAP_FACTOR)
        self._summariser = Summariser(conversation_id, model, settings.context_tokens, backoff=backoff)
        self._next_seq = 0
        self._ledger = UpdateLedger()
        self._reminders, self._firings, self._failed_deliveries = reminders, FiringLedger(), 0
        self._loaded = False
        self._parking = Parking(backoff if backoff is not None else Backoff(), mailbox_size, weakly(self._retry_soon))
        self._unrecorded: dict[int | str, None] = {}  # a dict: empty, a third of an empty set
        """Answers (by update id) and firings (by firing id) that reached the user while recording them
        failed: a retry only records them."""
        self._streams = TurnStreams(conversation_id, channel, weakly(self._append))
        # Preview message ids are recorded from the preview's own task, delivered markers from their own
        # (`_deliver`): records are numbered when made, and written one write at a time, in that order.
        self._writing = asyncio.Lock()
        self._unwritten: list[Record] = []  # numbered and tracked, not yet stored: the next write stores them
        self._write_failed = False  # then memory may hold what the store does not: no write until a reload
        self._recording: asyncio.Task[None] | None = None  # the last answer's delivered marker, being written

    # -- state ------------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Not while messages are parked: evicting the actor would leave them until the next start."""
        return super().idle and not self._parking and self._recording is None

    async def on_start(self) -> None:
        """Load what the model may still see of the history (again, after a crash). A store fault is
        not a crash: the messages that come are parked until the store can be read."""
        # For the life of this actor's task: every line it logs names its conversation.
        structlog.contextvars.bind_contextvars(conversation_id=self.conversation_id)
        try:
            await self._load()
        except StoreError as exc:
            self._loaded = False
            log.warning("conversation_load_failed", error=repr(exc))

    async def _load(self) -> None:
        started = time.perf_counter()
        await self._settle_recording()  # a write still under way is part of what is read
        await self._summariser.close(resets=-1)  # a crashed incarnation's call: planned again from the store
        cap = self._history.cap_tokens
        stored = await self._store.load_recent(self.conversation_id, VisibleStart(cap))
        self._history = History(cap)
        self._next_seq, self._unwritten, self._write_failed = _seq_after(stored), [], False
        self._ledger, self._firings = UpdateLedger.for_loaded(stored), FiringLedger()
        # A long history is decoded off the event loop, which other chats share (INLINE_DECODE_RECORDS).
        inline = len(stored) <= INLINE_DECODE_RECORDS
        for record in decode_history(stored) if inline else await asyncio.to_thread(decode_history, stored):
            self._track(record)
        self._loaded = True
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        log.debug("conversation_loaded", records=len(stored), in_context=len(self._history), duration_ms=duration_ms)

    async def on_stop(self) -> None:
        """Disarm the retry timer (parked messages stay pending in the ingress log for the next start);
        keep a summary that finished since the last message, cancel one still being made."""
        await self._settle_recording()
        self._parking.cancel()
        if self._parking:
            log.warning("conversation_stopped_with_parked_messages", messages=len(self._parking.messages))
        record = await self._summariser.close(resets=self._history.resets)
        if record is not None:
            try:
                await self._append(record)
            except StoreError as exc:  # the next activation makes it again
                log.warning("summary_not_stored", error=str(exc))

    async def _store_finished_summary(self) -> None:
        record = self._summariser.take(resets=self._history.resets)
        if record is not None:
            await self._append(record)

    def _track(self, record: Record) -> None:
        """Fold one record into the in-memory state (on load and as records are made)."""
        # What the model can no longer see (before a reset, in a summary, past the cap) leaves memory.
        self._history.add(record)
        self._ledger.track(record)
        self._firings.track(record)

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, message: Inbox) -> str | None:
        """Answer one message; returns the answer's text (None when it was a duplicate, or parked)."""
        if isinstance(message, RetryParked):
            await self._retry_parked()
            return None
        if self._parking:
            await self._park(message, None)  # behind the parked ones: the conversation's order holds
            return None
        try:
            if not self._loaded:
                await self._load()
            return await self._handle_update(message)
        except ConflictError:
            raise  # another writer: a crash reloads the history and retries the message
        except StoreError as exc:
            await self._park(message, exc)
            return None

    def interrupt(self, message: Inbox) -> bool:
        """/stop, out of band: cancel the running turn, or hold the stop for the turns queued before it."""
        return self._streams.interrupt(message, waiting=self.queued > 0)

    async def _handle_update(self, message: ConversationMessage) -> str | None:
        if isinstance(message, ReminderDue):
            return await self._fire(message)
        update_id = message.update_id
        with structlog.contextvars.bound_contextvars(update_id=update_id):
            if self._streams.stops.passed_by(message):
                await self._streams.settle()
            await self._store_finished_summary()
            stage = self._ledger.stage(update_id) if update_id is not None else None
            if update_id is not None and stage == "delivered":
                log.info("update_already_answered")
                await self._channel.done(update_id)
                return None
            answer = self._ledger.answer(update_id) if update_id is not None else None
            if update_id is not None and answer is not None:
                if update_id in self._unrecorded:
                    await self._record_delivered(update_id)
                    return answer.text
                log.info("update_answer_redelivered")
                async with self._streams.begin(message, self._ledger.preview(update_id)):  # a crash's preview
                    return await self._deliver(_reply(self.conversation_id, answer, message.target))
            if stage == "received" and isinstance(message, UserMessage):
                # Tool calls a crash left without results are answered in what the model sees (llm.context).
                log.info("update_turn_resumed")
                return await self._run_turn(message)
            if isinstance(message, Command):
                return await self._command(message)
            # Stored with the turn's first record, not before the model call (one fsync less); until then
            # the ingress log holds the update, and a failed write reloads the history (`_park`).
            self._number(_user_record(message))
            return await self._run_turn(message)

    async def _command(self, command: Command) -> str:
        if command.name == "reset":
            if not self._ledger.reset_recorded(command.update_id):  # a replay stores no second marker
                await self._append(ResetRecord(update_id=command.update_id, target=command.target))
            text = texts.RESET
        elif command.name in ACCOUNTING_COMMANDS and self._accounting is not None:
            text = await self._accounting.answer(command)
        elif command.name == "stop":  # one that reached the mailbox (the console): nothing runs now
            text = texts.NOTHING_TO_STOP
        elif command.name in MEMORY_COMMANDS:
            text = await answer_memory_command(command, self._setup)
        elif command.name == "reminders":
            text = await self._list_reminders(command.user_id)
        else:
            if command.name == "start":
                await self._resume_reminders()  # a chat that blocked the bot starts it again
            text = texts.START if command.name == "start" else texts.HELP
        return await self._answer_with_notice(command.update_id, command.target, text, "notice", None)

    async def _answer_with_notice(
        self,
        update_id: int | None,
        target: ReplyTarget,
        text: str,
        kind: Literal["notice", "error"],
        firing: str | None,
    ) -> str:
        reply = Reply(self.conversation_id, text, target, update_id, kind=kind, firing_id=firing)
        if update_id is not None or firing is not None:
            notice = NoticeRecord(text=text, is_error=kind == "error", target=target, update_id=update_id)
            await self._append(dataclasses.replace(notice, firing_id=firing))
        return await self._deliver(reply)

    def _turn_context(self, message: UserMessage | ReminderDue, instructions: str) -> TurnContext:
        return turn_context(self._settings, message, instructions)  # a subclass may add to it

    async def _run_turn(self, message: UserMessage | ReminderDue) -> str:
        started = time.perf_counter()
        update_id, firing = message.update_id, message.firing_id if isinstance(message, ReminderDue) else None

        async def record(item: TurnRecord) -> None:
            if isinstance(item, AssistantRecord):
                item = dataclasses.replace(item, target=message.target)
            await self._append(dataclasses.replace(item, update_id=update_id, firing_id=firing))

        ok, steps = False, 0
        model = await turn_model(self._accounting, self._model, self.conversation_id, message.user_id)
        output = self._streams.begin(message, self._ledger.preview(update_id))
        try:
            async with self._channel.typing(message.target):
                prepared = await self._setup.prepare(self.conversation_id, message, model)
                context = output.context(self._turn_context(message, prepared.instructions))
                history, recording = self._history.records(), output.recorder(record)
                turn = run_turn(model, prepared.toolbox, context, history=history, record=recording)
                result = await output.run(turn)
            ok, steps = True, result.steps
            answer = Reply(self.conversation_id, result.text, message.target, update_id, firing_id=firing)
            text = await self._deliver(answer, behind=message)
            log.info(  # after the delivery, which is when text was first visible unless a preview came earlier
                "turn_finished",
                steps=result.steps,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                model_ms=round(result.model_ms, 2),
                tool_ms=round(result.tool_ms, 2),
                step_limit=result.stopped_by_step_limit,
                first_text_ms=output.first_ms,
                **turn_fields(self._accounting, model, result.usage),
            )
            # After the delivery: a summary never delays an answer.
            self._summariser.start_if_needed(self._history, prepared.instructions, model=model)
            return text
        except BudgetExhausted as exc:
            ok, text = True, budget_notice(self._accounting, exc)  # answered by the notice: no turn error
            return await self._answer_with_notice(update_id, message.target, text, "notice", firing)
        except TurnStopped:
            recorded = self._ledger.answer(update_id) if update_id is not None else None
            return await self._streams.stopped(message, output, recorded, self._deliver)
        except TurnTimedOut as exc:
            log.warning("turn_failed_deadline", steps=exc.steps, error=str(exc))
            return await self._answer_with_notice(update_id, message.target, texts.TURN_TIMED_OUT, "error", firing)
        except LLMUnavailable as exc:
            log.warning("turn_failed_model_unavailable", status=exc.status, error=str(exc))
            return await self._answer_with_notice(update_id, message.target, texts.MODEL_UNAVAILABLE, "error", firing)
        except LLMRejected as exc:
            log.error("turn_failed_model_rejected", status=exc.status, error=str(exc))
            return await self._answer_with_notice(update_id, message.target, texts.MODEL_REJECTED, "error", firing)
        finally:
            await output.close()
            if self._metrics is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                self._metrics.turn(
                    latency_ms, conversation_id=self.conversation_id, steps=steps, ok=ok, first_text_ms=output.first_ms
                )
            turn_done(self._accounting, model, self.conversation_id)

    async def _deliver(self, reply: Reply, *, behind: ConversationMessage | None = None) -> str:
        """Send the reply, then record that it was delivered. `behind`: the message it answers, whose
        delivered marker is then written while the next message is taken (`_record_behind`)."""
        if not reply.text.strip():
            # Telegram refuses an empty message; the user must still hear back.
            reply = dataclasses.replace(reply, text=texts.EMPTY_ANSWER)
        try:
            await self._streams.deliver(reply)
        except DeliveryFailed as exc:
            log.error("reply_undeliverable", reason=exc.reason)
            self._failed_deliveries += 1
        if reply.firing_id is not None:
            await self._record_firing_delivered(reply.firing_id)
        if reply.update_id is not None:
            # Should recording it fail (the store), the retry records it and sends nothing again.
            self._unrecorded[reply.update_id] = None
            if behind is not None and behind.update_id == reply.update_id and self._pipelined:
                self._number(DeliveredRecord(update_id=reply.update_id))
                self._recording = asyncio.create_task(self._record_behind(behind, self._recording))
            else:
                await self._record_delivered(reply.update_id)
        if not self.queued:
            await self._streams.settle()  # a /stop held for turns queued before it: none is left
        return reply.text

    async def on_dead_letter(self, message: Inbox, error: BaseException) -> None:
        """Tell the user the message was skipped, and mark it handled so a replay skips it too."""
        await self._settle_recording()  # the marker below is numbered from what the store holds
        if isinstance(message, RetryParked):  # the retry itself kept crashing: try again later
            self._parking.schedule()
            return
        if isinstance(message, ReminderDue):
            return await self._firing_dead_letter(message)
        reply = Reply(self.conversation_id, texts.DEAD_LETTER, message.target, message.update_id, kind="error")
        try:
            async with self._streams.begin(message, self._ledger.preview(message.update_id)):  # replaces a preview
                await self._streams.deliver(reply)
        finally:
            self._unwritten, self._loaded = [], False  # what the failure left in memory is read again
            if message.update_id is not None:
                # The failure may have struck half-way through an append: number from the store.
                self._next_seq = _seq_after(await self._store.load_recent(self.conversation_id, _last_only))
                marker = DeliveredRecord(dead_letter=True, update_id=message.update_id, seq=self._next_seq)
                await self._store.append(self.conversation_id, [record_to_json(marker)])
                self._next_seq += 1
                await self._channel.done(message.update_id)
