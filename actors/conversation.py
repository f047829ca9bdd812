"""The conversation actor: owns one conversation's history and runs its turns, one at a time."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from actors import texts
from actors.protocol import Command, ConversationMessage, DeliveryFailed, Reply, ReplyChannel, ReplyTarget, UserMessage
from actors.runtime import Actor
from llm import ChatModel, LLMRejected, LLMUnavailable, Toolbox, run_turn
from stores import ConversationStore, Record

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


class ConversationActor(Actor[ConversationMessage]):
    """One conversation: loads its history once per activation and writes every record through.

    Records it keeps (each with `seq`, and `update_id` where a Telegram update caused it):
    `{"role": "user", ...}`, the model's `assistant` and `tool` records, and markers with a `type`:
    `notice` (an answer that is not the model's: help, reset, failures), `delivered` (the answer
    reached the user), `reset` (the history sent to the model starts after it; older records stay
    in the store as an archive). An update is answered at most once: after a restart, a replayed
    update that is already delivered is skipped, one answered but not delivered is delivered, and
    one only received gets its turn run again from the stored history.
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
        self._answer: Reply | None = None

    # -- state ------------------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Load the history from the store (again, after a crash)."""
        structlog.contextvars.bind_contextvars(conversation_id=self.conversation_id)
        started = time.perf_counter()
        records = await self._store.load(self.conversation_id)
        self._history = []
        self._next_seq = records[-1]["seq"] + 1 if records else 0
        self._last_update, self._stage, self._answer = None, "delivered", None
        for record in records:
            self._track(record)
        log.debug(
            "conversation_loaded",
            records=len(records),
            in_context=len(self._history),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _track(self, record: Record) -> None:
        """Fold one record into the in-memory state (on load and as records are made)."""
        kind = record.get("type")
        if kind == "reset":
            self._history = []
        elif kind is None:
            self._history.append(record)
        update_id = record.get("update_id")
        if update_id is None:
            return
        if self._last_update is None or update_id > self._last_update:
            # Update ids only grow, so the first record of a newer update starts its handling.
            self._last_update, self._stage, self._answer = update_id, "received", None
        elif update_id < self._last_update:
            return
        if kind == "notice" or (record.get("role") == "assistant" and not record.get("tool_calls")):
            self._stage = "answered"
            self._answer = Reply(
                self.conversation_id,
                str(record.get("content") or record.get("text") or ""),
                _target(record),
                update_id,
                kind=record.get("kind", "answer"),
            )
        elif kind == "delivered":
            # Delivered answers are never needed again; thousands of idle actors need not keep them.
            self._stage, self._answer = "delivered", None

    async def _append(self, record: Record) -> Record:
        record = {**record, "seq": self._next_seq}
        await self._store.append(self.conversation_id, [record])
        self._next_seq += 1
        self._track(record)
        return record

    # -- messages ---------------------------------------------------------------------------------

    async def handle(self, message: ConversationMessage) -> str | None:
        """Answer one message; returns the answer's text (None when it was a duplicate)."""
        update_id = message.update_id
        structlog.contextvars.bind_contextvars(update_id=update_id)
        try:
            if update_id is not None and self._last_update is not None:
                if update_id < self._last_update or (update_id == self._last_update and self._stage == "delivered"):
                    log.info("update_already_answered", stage=self._stage)
                    await self._channel.done(update_id)
                    return None
                if update_id == self._last_update and self._stage == "answered" and self._answer is not None:
                    log.info("update_answer_redelivered")
                    return await self._deliver(self._answer)
                if update_id == self._last_update and isinstance(message, UserMessage):
                    log.info("update_turn_resumed")
                    await self._close_interrupted_tool_calls()
                    return await self._run_turn(message)
            if isinstance(message, Command):
                return await self._command(message)
            await self._append(_user_record(message))
            return await self._run_turn(message)
        finally:
            structlog.contextvars.unbind_contextvars("update_id")

    async def _close_interrupted_tool_calls(self) -> None:
        """A crash between a tool call and its result leaves calls unanswered, which providers
        refuse; answer them with an error so the resumed turn can go on."""
        tail: list[Record] = []
        for record in reversed(self._history):
            if record.get("role") != "tool":
                break
            tail.append(record)
        at = len(self._history) - len(tail) - 1
        if at < 0 or self._history[at].get("role") != "assistant":
            return
        last = self._history[at]
        answered = {record.get("tool_call_id") for record in tail}
        for call in last.get("tool_calls") or []:
            if call.get("id") in answered:
                continue
            await self._append(
                {
                    "role": "tool",
                    "tool_call_id": call.get("id", ""),
                    "name": call.get("name", ""),
                    "content": "The tool call was interrupted by a restart; its result is unknown.",
                    "is_error": True,
                    "update_id": last.get("update_id"),
                }
            )

    async def _command(self, command: Command) -> str:
        if command.name == "reset":
            await self._append({"type": "reset", "update_id": command.update_id, **_target_fields(command.target)})
            text = texts.RESET
        else:
            text = texts.START if command.name == "start" else texts.HELP
        return await self._answer_with_notice(command.update_id, command.target, text, "notice")

    async def _answer_with_notice(
        self, update_id: int | None, target: ReplyTarget, text: str, kind: Literal["notice", "error"]
    ) -> str:
        reply = Reply(self.conversation_id, text, target, update_id, kind=kind)
        if update_id is not None:
            await self._append(
                {"type": "notice", "kind": kind, "text": text, "update_id": update_id, **_target_fields(target)}
            )
        return await self._deliver(reply)

    async def _run_turn(self, message: UserMessage) -> str:
        started = time.perf_counter()
        update_id = message.update_id

        async def record(item: dict[str, Any]) -> None:
            fields = _target_fields(message.target) if item.get("role") == "assistant" else {}
            await self._append({**item, "update_id": update_id, **fields})

        ok, steps = False, 0
        try:
            async with self._channel.typing(message.target):
                result = await run_turn(
                    self._model,
                    self._toolbox,
                    system=self._settings.system_prompt,
                    history=self._history,
                    record=record,
                    max_steps=self._settings.max_steps,
                    context_tokens=self._settings.context_tokens,
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
            answer = Reply(self.conversation_id, result.text, message.target, update_id)
            return await self._deliver(answer)
        except LLMUnavailable as exc:
            log.warning("turn_failed_model_unavailable", status=exc.status, error=str(exc))
            return await self._answer_with_notice(update_id, message.target, texts.MODEL_UNAVAILABLE, "error")
        except LLMRejected as exc:
            log.error("turn_failed_model_rejected", status=exc.status, error=str(exc))
            return await self._answer_with_notice(update_id, message.target, texts.MODEL_REJECTED, "error")
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
        if reply.update_id is not None:
            await self._append({"type": "delivered", "update_id": reply.update_id})
            await self._channel.done(reply.update_id)
        return reply.text

    async def on_dead_letter(self, message: ConversationMessage, error: BaseException) -> None:
        """Tell the user the message was skipped, and mark it handled so a replay skips it too."""
        reply = Reply(self.conversation_id, texts.DEAD_LETTER, message.target, message.update_id, kind="error")
        try:
            await self._channel.deliver(reply)
        finally:
            if message.update_id is not None:
                # The failure may have struck half-way through an append: number from the store.
                stored = await self._store.load(self.conversation_id)
                self._next_seq = stored[-1]["seq"] + 1 if stored else 0
                await self._store.append(
                    self.conversation_id,
                    [{"type": "delivered", "dead_letter": True, "update_id": message.update_id, "seq": self._next_seq}],
                )
                self._next_seq += 1
                await self._channel.done(message.update_id)


def _user_record(message: UserMessage) -> Record:
    record: Record = {"role": "user", "content": message.text, "update_id": message.update_id, "ts": time.time()}
    if message.user_id is not None:
        record["user_id"] = message.user_id
    return {**record, **_target_fields(message.target)}


def _target_fields(target: ReplyTarget) -> dict[str, Any]:
    fields: dict[str, Any] = {"chat_id": target.chat_id}
    if target.message_thread_id is not None:
        fields["thread_id"] = target.message_thread_id
    if target.reply_to_message_id is not None:
        fields["reply_to"] = target.reply_to_message_id
    return fields


def _target(record: Record) -> ReplyTarget:
    return ReplyTarget(int(record.get("chat_id", 0)), record.get("thread_id"), record.get("reply_to"))
