"""Settings of voice, photos and files: speech (transcription and voice replies) and media limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from conf._types import CaseInsensitive, OptionalHttpUrl, SettingsModel

if TYPE_CHECKING:
    from conf.settings import LLMSettings

__all__ = ["MediaSettings", "SpeechSettings"]


class SpeechSettings(SettingsModel):
    """Voice messages in (transcription) and out (text-to-speech), on an OpenAI-compatible server."""

    base_url: OptionalHttpUrl = ""
    """Empty: `LLM_BASE_URL` when the chat provider is openai, else OpenAI's (see `resolve`)."""
    api_key: str = ""
    """Empty: `LLM_API_KEY` when the chat provider is openai (see `resolve`)."""
    transcription_model: str = "whisper-1"
    """`off` turns voice input off."""
    voice_replies: Annotated[Literal["off", "inbound", "always"], CaseInsensitive] = "off"
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "alloy"
    timeout_seconds: float = Field(60.0, gt=0)
    retry_budget_seconds: float = Field(20.0, gt=0, le=60)
    max_voice_parts: int = Field(4, ge=1, le=20)
    """A long answer is read aloud in parts of at most 4096 characters, at most this many."""

    @property
    def transcription_on(self) -> bool:
        """False when `TRANSCRIPTION_MODEL=off`."""
        return self.transcription_model.strip().lower() not in ("off", "")

    def resolve(self, llm: LLMSettings) -> SpeechSettings:
        """These settings with the contract's fallbacks filled in: an OpenAI-compatible chat server
        is asked for speech too, with the chat model's key."""
        if llm.provider != "openai" or (self.base_url and self.api_key):
            return self
        return self.model_copy(
            update={"base_url": self.base_url or llm.base_url, "api_key": self.api_key or llm.api_key}
        )


class MediaSettings(SettingsModel):
    """Files users send: voice, photos, documents (limits are per file, in bytes; Telegram lets a bot
    download at most 20 MB)."""

    max_voice_bytes: int = Field(20_000_000, gt=0, le=20 * 1024 * 1024)
    max_photo_bytes: int = Field(10_000_000, gt=0, le=20 * 1024 * 1024)
    max_document_bytes: int = Field(20_000_000, gt=0, le=20 * 1024 * 1024)
    download_timeout_seconds: float = Field(60.0, gt=0)
    work_timeout_seconds: float = Field(30.0, gt=0)
    """Decoding one image or reading one document may take this long (off the event loop)."""
    workers: int = Field(2, ge=1, le=16)
    """Threads decoding images and reading documents: more would only share the same cores."""
    large_downloads: int = Field(2, ge=1, le=64)
    """Files over 2 MB held in memory at once (downloading or being read); smaller ones are not counted."""
    max_document_chars: int = Field(100_000, ge=1000)
    max_image_side: int = Field(1568, ge=256, le=8000)
    max_images_per_request: int = Field(8, ge=0, le=100)
    """The newest images of the conversation the model is shown with each request."""
    image_cache_bytes: int = Field(16_000_000, ge=0)
    """Prepared images kept in memory, so a turn's model calls do not download them again."""
    album_wait_seconds: float = Field(1.0, gt=0, le=10)
    """How long the photos of an album are waited for after the last one arrived."""
