"""Routing of updates that carry files, and the speech and media settings."""

from __future__ import annotations

from typing import Any

import pytest

from actors import texts
from actors.protocol import UserMessage
from channels.telegram.routing import BotIdentity, Ignore, Notify, Routed, route_update
from conf import AllowedUsers, ConfigError, load_settings
from llm.records import Attachment
from tests.e2e_support import SHIPPED

BOT = BotIdentity(id=999, username="test_assistant_bot")
ALLOWED = AllowedUsers(user_ids=frozenset({42}))


def update(chat_type: str = "private", **extra: Any) -> dict[str, Any]:
    chat_id = 42 if chat_type == "private" else -100
    body = {"message_id": 7, "chat": {"id": chat_id, "type": chat_type}, "from": {"id": 42, "is_bot": False}}
    return {"update_id": 100, "message": {**body, **extra}}


def routed_message(route: object) -> UserMessage:
    assert isinstance(route, Routed)
    assert isinstance(route.message, UserMessage)
    return route.message


def test_the_largest_photo_size_within_1568_px_is_chosen() -> None:
    sizes = [
        {"file_id": "s", "width": 90, "height": 67, "file_size": 1000},
        {"file_id": "x", "width": 1280, "height": 960, "file_size": 90_000},
        {"file_id": "w", "width": 2560, "height": 1920, "file_size": 400_000},
        {"file_id": "m", "width": 320, "height": 240, "file_size": 9000},
    ]
    message = routed_message(route_update(update(photo=sizes, caption="look"), BOT, ALLOWED))
    assert message.text == "look"
    assert message.attachments == (Attachment("photo", "x", "image/jpeg", 90_000, "", "", 1280, 960),)


def test_voice_audio_and_documents_keep_their_ids_sizes_types_and_names() -> None:
    voice = routed_message(route_update(update(voice={"file_id": "v", "file_size": 5}), BOT, ALLOWED))
    assert voice.attachments == (Attachment("voice", "v", "audio/ogg", 5),)
    document = {"file_id": "d", "file_size": 12, "file_name": "a.csv", "mime_type": "text/csv"}
    message = routed_message(route_update(update(document=document), BOT, ALLOWED))
    assert message.attachments == (Attachment("document", "d", "text/csv", 12, "a.csv"),)
    audio = {"file_id": "a", "file_name": "talk.m4a", "mime_type": "audio/mp4"}
    assert routed_message(route_update(update(audio=audio), BOT, ALLOWED)).attachments[0].kind == "audio"


def test_kinds_not_read_are_explained_even_with_a_caption() -> None:
    for kind in ("video", "video_note", "animation", "sticker", "location", "contact", "poll"):
        route = route_update(update(**{kind: {"file_id": "f"}}, caption="what is this?"), BOT, ALLOWED)
        assert isinstance(route, Notify)
        assert route.text == texts.NOT_READ[kind]


def test_album_parts_carry_their_group_and_in_groups_whether_they_address_the_bot() -> None:
    photo = [{"file_id": "p", "width": 10, "height": 10}]
    private = route_update(update(photo=photo, media_group_id="g1"), BOT, ALLOWED)
    assert isinstance(private, Routed)
    assert (private.media_group, private.addressed) == ("g1", True)
    caption = "@test_assistant_bot which?"
    mention = [{"type": "mention", "offset": 0, "length": 19}]
    first = route_update(
        update("supergroup", photo=photo, media_group_id="g2", caption=caption, caption_entities=mention), BOT, ALLOWED
    )
    second = route_update(update("supergroup", photo=photo, media_group_id="g2"), BOT, ALLOWED)
    assert isinstance(first, Routed)
    assert isinstance(second, Routed)
    assert (first.addressed, second.addressed) == (True, False)
    assert routed_message(first).text == "which?"
    assert isinstance(route_update(update("supergroup", photo=photo), BOT, ALLOWED), Ignore)


def test_speech_variables_reach_their_settings_and_fall_back_to_the_chat_model() -> None:
    env = {
        "LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "LLM_API_KEY": "sk-chat",
        "TRANSCRIPTION_MODEL": "whisper-large-v3",
        "VOICE_REPLIES": "Inbound",
        "TTS_MODEL": "tts-1",
        "TTS_VOICE": "nova",
    }
    settings = load_settings(SHIPPED, env=env)
    speech = settings.speech
    assert (speech.transcription_model, speech.voice_replies, speech.tts_model, speech.tts_voice) == (
        "whisper-large-v3",
        "inbound",
        "tts-1",
        "nova",
    )
    resolved = speech.resolve(settings.llm)
    assert (resolved.base_url, resolved.api_key) == ("http://127.0.0.1:9/v1", "sk-chat")
    own = load_settings(SHIPPED, env={**env, "SPEECH_BASE_URL": "http://127.0.0.1:8/v1", "SPEECH_API_KEY": "sk-s"})
    assert (own.speech.resolve(own.llm).base_url, own.speech.resolve(own.llm).api_key) == (
        "http://127.0.0.1:8/v1",
        "sk-s",
    )
    assert "sk-s" in own.secrets()
    anthropic = load_settings(SHIPPED, env={**env, "LLM_PROVIDER": "anthropic"})
    assert (anthropic.speech.resolve(anthropic.llm).base_url, anthropic.speech.resolve(anthropic.llm).api_key) == (
        "",
        "",
    )
    assert not load_settings(SHIPPED, env={"TRANSCRIPTION_MODEL": "off"}).speech.transcription_on


def test_bad_media_and_speech_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(SHIPPED, env={"VOICE_REPLIES": "sometimes"})
    assert caught.value.setting == "VOICE_REPLIES"
    with pytest.raises(ConfigError) as bad_url:
        load_settings(SHIPPED, env={"SPEECH_BASE_URL": "ftp://nope"})
    assert bad_url.value.setting == "SPEECH_BASE_URL"
