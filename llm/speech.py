"""Speech through any OpenAI-compatible server (OpenAI, Groq, a local whisper server): voice messages
to text (`/audio/transcriptions`) and answers to Ogg Opus voice (`/audio/speech`), on the official
`openai` SDK, which is imported when the first request needs it.

Transient failures (429, 5xx, timeouts, connection errors) are retried under the one backoff policy,
within `retry_budget_seconds`; then, or at once for a refusal, `SpeechError` is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from tenacity import retry_if_exception

from llm._errors import sdk_errors, translate_sdk_error
from llm.base import LLMError, LLMUnavailable
from ops.backoff import Backoff

__all__ = ["TRANSCRIPTION_EXTENSIONS", "SpeechClient", "SpeechError"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

TRANSCRIPTION_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
"""File name extensions `/audio/transcriptions` accepts: the endpoint reads the format from the name."""


class SpeechError(Exception):
    """Speech failed. `retryable` is True for a failure that may pass (the server down or busy),
    False for a refusal (a bad key, an unknown model, audio it cannot decode). `status` is HTTP's."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class SpeechClient:
    """Transcription and text-to-speech on one `AsyncOpenAI` client (made on first use; `aclose` closes it).

    `transcription_model` and `tts_model`/`tts_voice` name the models; `timeout_seconds` caps one request.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        transcription_model: str,
        tts_model: str,
        tts_voice: str,
        backoff: Backoff,
        timeout_seconds: float = 60.0,
        retry_budget_seconds: float = 20.0,
    ) -> None:
        self.transcription_model = transcription_model
        self.tts_model = tts_model
        self.tts_voice = tts_voice
        self._base_url = base_url
        self._api_key = api_key
        self._backoff = backoff
        self._timeout = timeout_seconds
        self._budget = retry_budget_seconds
        self._client: Any = None
        self._sdk: Any = None
        self._making = asyncio.Lock()

    async def transcribe(self, data: bytes, file_name: str, mime_type: str = "") -> str:
        """The text spoken in the audio `data`. `file_name` must end in one of TRANSCRIPTION_EXTENSIONS.

        Raises SpeechError."""

        async def call(client: Any) -> str:
            file = (file_name, data, mime_type) if mime_type else (file_name, data)
            result = await client.audio.transcriptions.create(model=self.transcription_model, file=file)
            return str(result.text).strip()

        return await self._request("transcription", call)

    async def synthesise(self, text: str) -> bytes:
        """`text` (at most 4096 characters: see `llm.spoken`) as Ogg Opus voice. Raises SpeechError."""

        async def call(client: Any) -> bytes:
            response = await client.audio.speech.create(
                model=self.tts_model, voice=self.tts_voice, input=text, response_format="opus"
            )
            return bytes(response.content)

        return await self._request("speech", call)

    async def _request(self, what: str, call: Callable[[Any], Awaitable[T]]) -> T:
        client = await self._ensure_client()
        try:
            async for attempt in self._backoff.retrying(
                retry=retry_if_exception(lambda exc: isinstance(exc, LLMUnavailable)),
                budget_seconds=self._budget,
                before_sleep=lambda state: log.warning(
                    "speech_retry", request=what, attempt=state.attempt_number, wait_s=round(state.upcoming_sleep, 3)
                ),
            ):
                with attempt:
                    try:
                        return await call(client)
                    except sdk_errors(self._sdk) as exc:
                        raise translate_sdk_error("speech", self._sdk, exc) from exc
        except LLMError as exc:
            raise SpeechError(str(exc), retryable=isinstance(exc, LLMUnavailable), status=exc.status) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _ensure_client(self) -> Any:
        if self._client is None:
            async with self._making:
                if self._client is None:
                    # The SDK costs ~0.3 s to import: a thread keeps the event loop serving meanwhile.
                    sdk = await asyncio.to_thread(_import_openai)
                    self._sdk = sdk
                    self._client = sdk.AsyncOpenAI(
                        # A local whisper server needs no key, but the SDK insists on one.
                        api_key=self._api_key or "not-needed",
                        base_url=self._base_url or None,
                        timeout=self._timeout,
                        max_retries=0,  # the retries are ours, under the one backoff policy
                    )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client, if one was made."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _import_openai() -> Any:
    import openai

    return openai
