"""Wiring of voice, photos and files: the Telegram file source, the speech client, voice replies."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import structlog

from actors.media import ConversationMedia, Media
from conf import Settings
from llm.context import ImageCost, anthropic_image_tokens, openai_image_tokens
from ops.backoff import Backoff

if TYPE_CHECKING:
    from telegram import Bot

    from actors.voice import VoiceReplies
    from channels.telegram.sender import TelegramSender
    from llm.speech import SpeechClient

__all__ = ["image_cost_of", "open_media"]

log = structlog.get_logger(__name__)


def image_cost_of(settings: Settings) -> ImageCost:
    """The token formula of the configured provider for an image the user sent."""
    return openai_image_tokens if settings.llm.provider == "openai" else anthropic_image_tokens


async def open_media(
    stack: AsyncExitStack, settings: Settings, bot: Bot, sender: TelegramSender, backoff: Backoff
) -> ConversationMedia:
    """Build the media parts on `stack` (closed in reverse order with it)."""
    from channels.telegram.media import TelegramFiles, TelegramVoiceSender

    files = TelegramFiles(bot, backoff, timeout_seconds=settings.media.download_timeout_seconds)
    stack.push_async_callback(files.aclose)
    speech = _speech_client(settings, backoff)
    if speech is not None:
        stack.push_async_callback(speech.aclose)
    transcription = speech is not None and settings.speech.transcription_on
    media = Media(files, settings.media, speech=speech, transcription=transcription)
    stack.push_async_callback(media.aclose)
    mode = settings.speech.voice_replies
    voice: VoiceReplies | None = None
    if speech is not None and mode != "off":
        from actors.voice import VoiceReplies

        voice = VoiceReplies(speech, TelegramVoiceSender(sender), mode, max_parts=settings.speech.max_voice_parts)
    log.info("media_ready", transcription=transcription, voice_replies=mode if voice is not None else "off")
    return ConversationMedia(media, voice, image_cost_of(settings))


def _speech_client(settings: Settings, backoff: Backoff) -> SpeechClient | None:
    """The speech client, or None when speech has nowhere to go (no URL and no key: OpenAI's would refuse)."""
    speech = settings.speech.resolve(settings.llm)
    if not (speech.transcription_on or speech.voice_replies != "off"):
        return None
    if not (speech.base_url or speech.api_key):
        log.warning("speech_not_configured", hint="set SPEECH_API_KEY (or SPEECH_BASE_URL) for voice messages")
        return None
    from llm.speech import SpeechClient

    return SpeechClient(
        base_url=speech.base_url,
        api_key=speech.api_key,
        transcription_model=speech.transcription_model,
        tts_model=speech.tts_model,
        tts_voice=speech.tts_voice,
        backoff=backoff,
        timeout_seconds=speech.timeout_seconds,
        retry_budget_seconds=speech.retry_budget_seconds,
    )
