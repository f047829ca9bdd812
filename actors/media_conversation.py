"""The conversation actor with voice, photos and files: it reads the files of a user message before the
message is recorded (`actors.media`), shows the conversation's images to the model (`SeeingModel`),
counts them by the provider's formula, and answers voice with voice (`actors.voice`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from actors import texts
from actors._seeing import SeeingModel
from actors.conversation import ConversationActor
from actors.media import ConversationMedia
from actors.protocol import ConversationMessage, ReminderDue, UserMessage
from llm import AssistantRecord, NoticeRecord, Record, ResetRecord, TurnContext

__all__ = ["IMAGES_REFUSED", "MediaConversationActor"]

log = structlog.get_logger(__name__)

IMAGES_REFUSED = "images_refused"
"""The `reason` of the notice that records that the conversation's model cannot see images."""


class MediaConversationActor(ConversationActor):
    """A ConversationActor (see there) that also hears, sees and reads.

    A new user message with files is prepared first: a voice message becomes its transcript, a
    document its text, an image its reference and size (`Media.prepare`); when nothing of it can be
    read, the explanation is the answer. Only then is it recorded, so a crash before that (mid-
    transcription, say) prepares it again on replay, and a replay after it needs nothing again.
    Without `media` (the console), a message with files is answered with texts.UNREADABLE.
    """

    def __init__(self, conversation_id: str, *, media: ConversationMedia | None = None, **kwargs: Any) -> None:
        super().__init__(conversation_id, **kwargs)
        self._files = media
        if media is not None:
            self._model = SeeingModel(self._model, media.media.images)  # the turns'; summaries keep the plain one
        self._model_answered: int | None = None

    @property
    def _seeing(self) -> SeeingModel | None:
        # Not an attribute of its own: past 29 attributes an instance's dict is no longer compact
        # (~1.3 KB more per live conversation).
        return self._model if isinstance(self._model, SeeingModel) else None

    def _track(self, record: Record) -> None:
        super()._track(record)
        if isinstance(record, AssistantRecord) and not record.tool_calls:
            self._model_answered = record.update_id
        if self._seeing is None:
            return
        if isinstance(record, ResetRecord):
            self._seeing.sees = True  # a fresh start tries images again
        elif isinstance(record, NoticeRecord) and record.reason == IMAGES_REFUSED:
            self._seeing.sees = False

    async def _handle_update(self, message: ConversationMessage) -> str | None:
        update_id = message.update_id
        new = update_id is None or self._ledger.stage(update_id) is None
        if isinstance(message, UserMessage) and message.attachments and new:
            with structlog.contextvars.bound_contextvars(update_id=update_id):
                prepared = await self._read_files(message)
            if isinstance(prepared, str):
                return prepared
            message = prepared
        return await super()._handle_update(message)

    async def _read_files(self, message: UserMessage) -> UserMessage | str:
        """The message with what its files said, or the answer when none of them could be read."""
        if self._files is None:
            return await self._answer_with_notice(message.update_id, message.target, texts.UNREADABLE, "notice", None)
        async with self._channel.typing(message.target):
            prepared = await self._files.media.prepare(message)
        if prepared.notice is not None:
            return await self._answer_with_notice(message.update_id, message.target, prepared.notice, "notice", None)
        return dataclasses.replace(message, text=prepared.text, attachments=prepared.attachments)

    def _turn_context(self, message: UserMessage | ReminderDue, instructions: str) -> TurnContext:
        context = super()._turn_context(message, instructions)
        return context if self._files is None else dataclasses.replace(context, image_cost=self._files.image_cost)

    async def _run_turn(self, message: UserMessage | ReminderDue) -> str:
        text = await super()._run_turn(message)
        if self._seeing is not None and self._seeing.refused:
            # Kept, so that a later activation of this conversation leaves images out too.
            self._seeing.refused = False
            await self._append(NoticeRecord(text=texts.CANNOT_SEE_IMAGES, target=message.target, reason=IMAGES_REFUSED))
        voice = self._files.voice if self._files is not None else None
        if not isinstance(message, UserMessage):  # a reminder's task: its answer is not spoken
            return text
        if voice is not None and voice.wanted(message) and self._model_answered == message.update_id:
            await voice.speak(message.target, text)
        return text
