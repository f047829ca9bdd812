"""The conversation actor: owns one conversation's history and runs its turns, one at a time."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo

import structlog

from actors import texts
from actors._firings import FiringLedger, ReminderFirings
from actors.protocol import (
    Command,
    ConversationMessage,
    DeliveryFailed,
    ReminderDue,
    Reply,
    ReplyChannel,
    ReplyTarget,
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
    Record,
    ResetRecord,
    Toolbox,
    TurnContext,
    TurnRecord,
    UserRecord,
    decode_history,
    record_to_json,
    run_turn,
)
from stores import ConversationStore

if TYPE_CHECKING:
    from tools.builtin import Toolkit
    from tools.builtin_reminders import ReminderTools
    from tools.zones import UserZones

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

    def turn(self, latency_ms: float, *, conversation_id: str, steps: int, ok: bool) -> None: ...


class ConversationActor(ReminderFirings, Actor[ConversationMessage]):
    """One conversation: loads its history once per activation and writes every record through.

    The records (see `llm.records`) each carry `seq`, and `update_id` where a Telegram update caused
    them: the user's message, the model's assistant and tool result records, and markers: a notice
    (an answer that is not the model's: help, reset, failures), delivered (the answer reached the
    user), reset (the model sees nothing before it; older records stay in the store as an archive).
    An update is answered at most once: after a restart, a replayed update that is already delivered
    is skipped, one answered but not delivered is delivered, and one only received gets its turn run
    again from the stored history. A reminder's firing (`ReminderDue`) is handled the same way by its
    firing id (see `actors._firings`).

    With a `toolkit`, each turn's tools are the built-in tools bound to that turn (its user, chat,
    the user's zone from `zones`, and `clock`'s time) beside the MCP tools; without, `toolbox`.
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
        toolkit: Toolkit | None = None,
        zones: UserZones | None = None,
        reminders: ReminderTools | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(f"conversation:{conversation_id}", mailbox_size)
        self.conversation_id = conversation_id
        self._store = store
        self._model = model
        self._toolbox = toolbox
        self._channel = channel
        self._settings = settings
        self._metrics = metrics
        self._toolkit = toolkit
        self._zones = zones
        self._reminders = reminders
        self._clock = clock
        self._firings = FiringLedger()
        self._failed_deliveries = 0
        self._history: list[Record] = []
        self._next_seq = 0
        self._last_update: int | None = None
        self._stage: Stage = "delivered"
        self._answer: AssistantRecord | NoticeRecord | None = None

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
        self._firings = FiringLedger()
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
        self._firings.track(record)
        update_id = record.update_id
        if update_id is None:
            return
        if self._last_update is None or update_id > self._last_update:
            # Update ids only grow, so the first record of a newer update starts its handling.
            self._last_update, self._stage, self._answer = update_id, "received", None
        elif update_id < self._last_update:
            return
        if isinstance(record, NoticeRecord) or (isinstance(record, AssistantRecord) and not record.tool_calls):
            self._stage, self._answer = "answered", record
        elif isinstance(record, DeliveredRecord):
            # Delivered answers are never needed again; thousands of idle actors need not keep them.
            self._stage, self._answer = "delivered", None

    async def _append(self, *records: Record) -> None:
        """Append records in one write (durable together), numbered in order."""
        numbered = [dataclasses.replace(record, seq=self._next_seq + index) for index, record in enumerate(records)]
        await self._store.append(self.conversation_id, [record_to_json(record) for record in numbered])
        self._next_seq += len(numbered)
        for record in numbered:
            self._track(record)

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, message: ConversationMessage) -> str | None:
        """Answer one message; returns the answer's text (None when it was a duplicate), or for a
        reminder's firing its `FiringOutcome`."""
        if isinstance(message, ReminderDue):
            return await self._fire(message)
        update_id = message.update_id
        with structlog.contextvars.bound_contextvars(update_id=update_id):
            if update_id is not None and self._last_update is not None:
                if update_id < self._last_update or (update_id == self._last_update and self._stage == "delivered"):
                    log.info("update_already_answered", stage=self._stage)
                    await self._channel.done(update_id)
                    return None
                if update_id == self._last_update and self._stage == "answered" and self._answer is not None:
                    log.info("update_answer_redelivered")
                    return await self._deliver(_reply(self.conversation_id, self._answer, message.target))
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
        elif command.name == "reminders":
            text = await self._list_reminders(command.user_id)
        else:
            if command.name == "start":
                await self._resume_reminders()  # a chat that blocked the bot starts it again
            text = texts.START if command.name == "start" else texts.HELP
        return await self._answer_with_notice(command.update_id, command.target, text, "notice")

    async def _answer_with_notice(
        self,
        update_id: int | None,
        target: ReplyTarget,
        text: str,
        kind: Literal["notice", "error"],
        *,
        firing_id: str | None = None,
    ) -> str:
        reply = Reply(self.conversation_id, text, target, update_id, kind=kind, firing_id=firing_id)
        if update_id is not None or firing_id is not None:
            notice = NoticeRecord(
                text=text, is_error=kind == "error", target=target, update_id=update_id, firing_id=firing_id
            )
            await self._append(notice)
        return await self._deliver(reply)

    def _turn_context(self, message: UserMessage | ReminderDue) -> TurnContext:
        """What this turn asks of the model: the instructions are built here, per turn."""
        settings = self._settings
        return TurnContext(settings.system_prompt, settings.max_steps, settings.context_tokens)

    async def _turn_toolbox(self, message: UserMessage | ReminderDue) -> Toolbox:
        """The tools of this turn: the built-in ones bound to its user and chat, and MCP's."""
        if self._toolkit is None:
            return self._toolbox
        from tools.builtin import ToolContext

        zone = await self._zones.zone_of(message.user_id) if self._zones is not None else None
        update_id = message.update_id if isinstance(message, UserMessage) else None
        context = ToolContext(
            message.user_id, self.conversation_id, message.target, zone or _UTC, self._clock(), update_id
        )
        return self._toolkit.for_turn(context)

    async def _run_turn(self, message: UserMessage | ReminderDue) -> str:
        started = time.perf_counter()
        update_id = message.update_id if isinstance(message, UserMessage) else None
        firing = message.firing_id if isinstance(message, ReminderDue) else None

        async def record(item: TurnRecord) -> None:
            if isinstance(item, AssistantRecord):
                item = dataclasses.replace(item, target=message.target)
            await self._append(dataclasses.replace(item, update_id=update_id, firing_id=firing))

        ok, steps = False, 0
        try:
            toolbox = await self._turn_toolbox(message)
            async with self._channel.typing(message.target):
                result = await run_turn(
                    self._model, toolbox, self._turn_context(message), history=self._history, record=record
                )
            ok, steps = True, result.steps
            log.info(
                "turn_finished",
                steps=result.steps,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                model_ms=round(result.model_ms, 2),
                tool_ms=round(result.tool_ms, 2),
                step_limit=result.stopped_by_step_limit,
            )
            answer = Reply(self.conversation_id, result.text, message.target, update_id, firing_id=firing)
            return await self._deliver(answer)
        except LLMUnavailable as exc:
            log.warning("turn_failed_model_unavailable", status=exc.status, error=str(exc))
            return await self._answer_with_notice(
                update_id, message.target, texts.MODEL_UNAVAILABLE, "error", firing_id=firing
            )
        except LLMRejected as exc:
            log.error("turn_failed_model_rejected", status=exc.status, error=str(exc))
            return await self._answer_with_notice(
                update_id, message.target, texts.MODEL_REJECTED, "error", firing_id=firing
            )
        finally:
            if self._metrics is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                self._metrics.turn(latency_ms, conversation_id=self.conversation_id, steps=steps, ok=ok)

    async def _deliver(self, reply: Reply) -> str:
        if not reply.text.strip():
            # Telegram refuses an empty message; the user must still hear back.
            reply = dataclasses.replace(reply, text=texts.EMPTY_ANSWER)
        try:
            await self._channel.deliver(reply)
        except DeliveryFailed as exc:
            log.error("reply_undeliverable", reason=exc.reason)
            self._failed_deliveries += 1
        if reply.update_id is not None or reply.firing_id is not None:
            await self._append(DeliveredRecord(update_id=reply.update_id, firing_id=reply.firing_id))
        if reply.update_id is not None:
            await self._channel.done(reply.update_id)
        return reply.text

    async def on_dead_letter(self, message: ConversationMessage, error: BaseException) -> None:
        """Tell the user the message was skipped, and mark it handled so a replay skips it too."""
        if isinstance(message, ReminderDue):
            self._next_seq = _seq_after(await self._store.load(self.conversation_id))
            await self._firing_dead_letter(message)
            return
        reply = Reply(self.conversation_id, texts.DEAD_LETTER, message.target, message.update_id, kind="error")
        try:
            await self._channel.deliver(reply)
        finally:
            if message.update_id is not None:
                # The failure may have struck half-way through an append: number from the store.
                self._next_seq = _seq_after(await self._store.load(self.conversation_id))
                marker = DeliveredRecord(dead_letter=True, update_id=message.update_id, seq=self._next_seq)
                await self._store.append(self.conversation_id, [record_to_json(marker)])
                self._next_seq += 1
                await self._channel.done(message.update_id)


_UTC = ZoneInfo("UTC")


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
