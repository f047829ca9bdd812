"""How a conversation actor's records reach its store: numbered when made, written one write at a
time in that order, and an answer's delivered marker written while the next message is taken."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import structlog

from actors.protocol import ConversationMessage, ReplyChannel
from llm import DeliveredRecord, Record, record_to_json
from stores import ConversationStore, StoreError

__all__ = ["RecordWrites"]

log = structlog.get_logger(__name__)


class RecordWrites:
    """The write path of `ConversationActor` (a mixin; the state and steps it uses are declared below
    for the type checker, and set up by the actor).

    Records are numbered (`seq`) and tracked when made (`_number`), and stored by the next write
    (`_write`), which takes everything numbered before it: the user's message goes with the turn's
    first record. A failed write fails every write after it until the history is read again (`_load`,
    which `_park` asks for), since memory then holds records the store may not.
    """

    if TYPE_CHECKING:
        conversation_id: str
        _store: ConversationStore
        _channel: ReplyChannel
        _next_seq: int
        _unwritten: list[Record]
        _write_failed: bool
        _writing: asyncio.Lock
        _recording: asyncio.Task[None] | None
        _unrecorded: dict[int | str, None]

        def _track(self, record: Record) -> None: ...
        async def _park(self, message: ConversationMessage, error: StoreError | None) -> None: ...

    def _number(self, record: Record) -> None:
        """Number the record and track it; the next write stores it, after the ones numbered before."""
        record = dataclasses.replace(record, seq=self._next_seq)
        self._next_seq += 1
        self._unwritten.append(record)
        self._track(record)

    async def _append(self, record: Record) -> None:
        """Number the record and store it (with any numbered before it, in the same write)."""
        self._number(record)
        await self._write()

    async def _write(self) -> None:
        """Store what is numbered and not yet written, in one write. A failed write fails every write
        after it until the history is read again (`_load`): memory holds records the store may not."""
        async with self._writing:
            if self._write_failed:
                raise StoreError("an earlier write failed: the history is read again first")
            batch, self._unwritten = self._unwritten, []
            if batch:  # else a write that started while this one waited stored them
                try:
                    await self._store.append(self.conversation_id, [record_to_json(record) for record in batch])
                except BaseException:
                    self._write_failed = True
                    raise

    async def _record_delivered(self, update_id: int) -> None:
        await self._append(DeliveredRecord(update_id=update_id))
        self._unrecorded.pop(update_id, None)
        await self._channel.done(update_id)

    async def _record_behind(self, message: ConversationMessage, previous: asyncio.Task[None] | None) -> None:
        """Write the delivered marker numbered for `message` while the actor takes its next message,
        whose records are numbered after it and written after it (one write at a time, in order); the
        update leaves the ingress log once the marker is stored. Should the write fail, the message is
        parked like any other: its retry records the marker and sends nothing again."""
        assert message.update_id is not None
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self._write()
            self._unrecorded.pop(message.update_id, None)
            await self._channel.done(message.update_id)
        except StoreError as exc:
            await self._park(message, exc)
        except Exception as exc:  # a bug: the update stays pending, and a restart delivers it again
            log.error("delivered_mark_failed", update_id=message.update_id, error=repr(exc))
        finally:
            if self._recording is asyncio.current_task():
                self._recording = None

    async def _settle_recording(self) -> None:
        """Wait for the delivered marker being written (`_record_behind`), which handles its own failure."""
        if self._recording is not None:
            await asyncio.wait([self._recording])
