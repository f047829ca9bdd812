"""Voice replies: an answer read aloud (text-to-speech) and sent as voice messages after the written one."""

from __future__ import annotations

from typing import Literal, Protocol

import structlog

from actors.protocol import DeliveryFailed, ReplyTarget, UserMessage
from llm.speech import SpeechClient, SpeechError
from llm.spoken import spoken_parts

__all__ = ["VoiceReplies", "VoiceSender"]

log = structlog.get_logger(__name__)


class VoiceSender(Protocol):
    """Sends a voice message (Ogg Opus bytes) to a chat."""

    async def send_voice(self, target: ReplyTarget, ogg: bytes) -> None:
        """Send it; transient failures are retried inside. Raises DeliveryFailed when it never can be."""
        ...


class VoiceReplies:
    """With `mode` `inbound`, a voice message is answered with voice too; with `always`, every answer.

    The written answer is always sent first; then the answer (code blocks left out, see `llm.spoken`)
    is synthesised part by part, each part sent as it is ready. A failure of either leaves the written
    answer as it is: it is logged, never raised.
    """

    def __init__(
        self, speech: SpeechClient, sender: VoiceSender, mode: Literal["inbound", "always"], *, max_parts: int = 4
    ) -> None:
        self._speech = speech
        self._sender = sender
        self._mode = mode
        self._max_parts = max_parts

    def wanted(self, message: UserMessage) -> bool:
        """True if the answer to `message` should be spoken too."""
        return self._mode == "always" or any(item.kind == "voice" for item in message.attachments)

    async def speak(self, target: ReplyTarget, answer: str) -> int:
        """Send `answer` as voice message(s); returns how many were sent. Only cancellation raises."""
        sent = 0
        for part in spoken_parts(answer, max_parts=self._max_parts):
            try:
                ogg = await self._speech.synthesise(part)
            except SpeechError as exc:
                log.warning("voice_reply_failed", stage="speech", status=exc.status, error=str(exc))
                break
            try:
                await self._sender.send_voice(target, ogg)
            except DeliveryFailed as exc:
                log.warning("voice_reply_failed", stage="send", reason=exc.reason)
                break
            sent += 1
        return sent
