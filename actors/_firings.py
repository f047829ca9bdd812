"""How a conversation actor handles a reminder's firing (`ReminderDue`), and what it remembers of them.

A firing is recorded like a user message, by its `firing_id` instead of an update id:

- a plain reminder is sent as written (with a note if it is late), then recorded as fired and
  delivered in one append, so a crash before the append sends it once more at most, in exactly the
  window between Telegram accepting it and the store recording it;
- a `run` reminder is recorded as fired first (the model sees it as the task of its turn, see
  `llm.context`), then its turn runs as a message's does, its records stamped with the firing id,
  and its answer is delivered and marked delivered.

`FiringLedger` folds a conversation's records into the state of each reminder's latest firing, so
a firing told again after a crash is recognised: already delivered (skipped), answered but not
delivered (delivered now), fired but not answered (its turn runs again from the stored history).
The model never answers a plain reminder, so the assistant cannot react to its own reminders in
a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import structlog

from actors import texts
from actors.protocol import DeliveryFailed, FiringOutcome, ReminderDue, Reply, ReplyChannel
from llm import AssistantRecord, DeliveredRecord, NoticeRecord, Record, ReminderFiredRecord
from stores.reminders import firing_due

if TYPE_CHECKING:
    from actors.turn_setup import TurnSetup
    from stores import ConversationStore
    from tools.builtin_reminders import ReminderTools

__all__ = ["FiringLedger", "FiringStage", "ReminderDue", "ReminderFirings"]

log = structlog.get_logger(__name__)

FiringStage = Literal["new", "fired", "answered", "delivered", "past"]
"""Where a firing is: not seen, recorded as fired, answered (not yet delivered), delivered, or
older than the reminder's latest firing (so handled long ago)."""


@dataclass(slots=True)
class _Latest:
    firing_id: str
    due: datetime
    stage: FiringStage
    answer: AssistantRecord | NoticeRecord | None = None


class FiringLedger:
    """The latest firing of each reminder this conversation has seen, and how far it got.

    A reminder's firings are claimed one after another, so its latest firing is the only one that
    can be unfinished: one entry per reminder (not per firing) is enough, and the answer is kept
    only until it is delivered.
    """

    __slots__ = ("_latest",)

    def __init__(self) -> None:
        self._latest: dict[str, _Latest] = {}

    def track(self, record: Record) -> None:
        """Fold one record (on load and as records are made)."""
        firing = record.firing_id
        if firing is None:
            return
        reminder_id, due = _parts(firing)
        entry = self._latest.get(reminder_id)
        if entry is None or due > entry.due:
            entry = self._latest[reminder_id] = _Latest(firing, due, "fired")
        elif due < entry.due:
            return
        if isinstance(record, NoticeRecord) or (isinstance(record, AssistantRecord) and not record.tool_calls):
            entry.stage, entry.answer = "answered", record
        elif isinstance(record, DeliveredRecord):
            entry.stage, entry.answer = "delivered", None

    def stage_of(self, firing: str) -> FiringStage:
        """How far `firing` got."""
        reminder_id, due = _parts(firing)
        entry = self._latest.get(reminder_id)
        if entry is None or due > entry.due:
            return "new"
        if due < entry.due:
            return "past"
        return entry.stage

    def answer_of(self, firing: str) -> AssistantRecord | NoticeRecord | None:
        """The recorded answer of a firing that is answered but not delivered."""
        entry = self._latest.get(_parts(firing)[0])
        return entry.answer if entry is not None and entry.firing_id == firing else None


def _parts(firing: str) -> tuple[str, datetime]:
    return firing.partition("@")[0], firing_due(firing)


class ReminderFirings:
    """The conversation actor's part that handles `ReminderDue` and `/reminders` (a mixin).

    The actor provides the state and steps a message's handling also uses (declared below for the
    type checker) and holds `_firings`, `_reminders`, `_failed_deliveries` and `_unrecorded`.
    """

    if TYPE_CHECKING:
        conversation_id: str
        _channel: ReplyChannel
        _store: ConversationStore
        _setup: TurnSetup
        _next_seq: int
        _firings: FiringLedger
        _reminders: ReminderTools | None
        _failed_deliveries: int
        _unrecorded: dict[int | str, None]

        _unwritten: list[Record]
        _write_failed: bool
        _loaded: bool

        def _number(self, record: Record) -> None: ...
        async def _write(self) -> None: ...
        async def _deliver(self, reply: Reply) -> str: ...
        async def _run_turn(self, message: ReminderDue) -> str: ...

    async def _fire(self, due: ReminderDue) -> FiringOutcome:
        """Send (or carry out) one firing, unless this conversation already did."""
        with structlog.contextvars.bound_contextvars(firing_id=due.firing_id):
            stage = self._firings.stage_of(due.firing_id)
            if stage in ("delivered", "past"):
                log.info("firing_already_sent", stage=stage)
                return "duplicate"
            failed_before = self._failed_deliveries
            if due.firing_id in self._unrecorded:
                # Sent before the store failed to record it: record it now, send nothing again.
                await self._record_firing_delivered(due.firing_id, plain=None if stage == "answered" else due)
            elif stage == "answered":
                log.info("firing_answer_redelivered")
                answer = self._firings.answer_of(due.firing_id)
                text = answer.text if answer is not None else due.text
                await self._deliver(Reply(self.conversation_id, text, due.target, firing_id=due.firing_id))
            elif due.run:
                await self._carry_out(due, resumed=stage == "fired")
            else:
                await self._send_plain(due)
            outcome: FiringOutcome = "undeliverable" if self._failed_deliveries > failed_before else "sent"
            log.info("reminder_fired", run=due.run, late=bool(due.late), outcome=outcome)
            return outcome

    async def _send_plain(self, due: ReminderDue) -> None:
        text = f"{due.text}\n\n{due.late}" if due.late else due.text
        try:
            await self._channel.deliver(
                Reply(self.conversation_id, text, due.target, kind="notice", firing_id=due.firing_id)
            )
        except DeliveryFailed as exc:
            log.error("reminder_undeliverable", reason=exc.reason)
            self._failed_deliveries += 1
            await self._record_firing_delivered(due.firing_id, plain=due, never=True)
        else:
            await self._record_firing_delivered(due.firing_id, plain=due)

    async def _record_firing_delivered(
        self, firing: str, *, plain: ReminderDue | None = None, never: bool = False
    ) -> None:
        """Record that a firing was sent (or, `never`, never can be): a plain one as fired and delivered
        in one write. Should the store fail, a retry records it without sending it again."""
        self._unrecorded[firing] = None
        delivered = DeliveredRecord(dead_letter=never, firing_id=firing)
        if plain is None:
            await self._append_together(delivered)
        else:
            fired = ReminderFiredRecord(text=plain.text, target=plain.target, firing_id=firing)
            await self._append_together(fired, delivered)
        self._unrecorded.pop(firing, None)

    async def _carry_out(self, due: ReminderDue, *, resumed: bool) -> None:
        if resumed:
            log.info("firing_turn_resumed")
        else:
            fired = ReminderFiredRecord(text=due.text, target=due.target, run=True, firing_id=due.firing_id)
            await self._append_together(fired)
            if due.late:
                await self._send_note(due, due.late)
        await self._run_turn(due)

    async def _send_note(self, due: ReminderDue, text: str) -> None:
        try:
            await self._channel.deliver(Reply(self.conversation_id, text, due.target, kind="notice"))
        except DeliveryFailed as exc:
            log.warning("reminder_note_undeliverable", reason=exc.reason)

    async def _append_together(self, *records: Record) -> None:
        """Append records in one write (durable together), numbered in order."""
        for record in records:
            self._number(record)
        await self._write()

    async def _firing_dead_letter(self, due: ReminderDue) -> None:
        """A firing crashed the actor twice: tell the user it was skipped, and record it as handled."""
        try:
            await self._send_note(due, texts.REMINDER_FAILED.format(text=due.text))
        finally:
            # The failure may have struck half-way through an append: number from the store.
            stored = await self._store.load_recent(self.conversation_id, lambda record: True)
            self._next_seq = int(stored[-1]["seq"]) + 1 if stored else 0
            # What the failure left in memory is read again before the next message.
            self._unwritten, self._write_failed, self._loaded = [], False, False
            await self._append_together(DeliveredRecord(dead_letter=True, firing_id=due.firing_id))

    async def _list_reminders(self, user_id: int | None) -> str:
        """The text of `/reminders`: this chat's reminders, in the user's zone."""
        if self._reminders is None:
            return texts.REMINDERS_OFF
        from tools.builtin_reminders import reminder_lines

        zone = await self._setup.zone_for(user_id)
        reminders = await self._reminders.store.list_for_conversation(self.conversation_id)
        if not reminders:
            return texts.REMINDERS_NONE
        return "\n".join([texts.REMINDERS_HEADER, *reminder_lines(reminders, zone)])

    async def _resume_reminders(self) -> None:
        """The chat can be reached again (`/start`): its paused reminders go on."""
        if self._reminders is not None:
            resumed = await self._reminders.resume_paused(self.conversation_id)
            if resumed:
                log.info("reminders_resumed", count=resumed)
