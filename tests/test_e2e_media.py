"""End to end: voice, photos, albums and files through the fake Bot API (real bytes) and the fake model
server (chat with image checks, transcription, speech), with the whole system running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from actors import texts
from conf import Settings
from llm.attachments import IMAGE_NOT_SHOWN
from tests.e2e_support import assistant_env, fast_settings, running
from tests.fakes import media
from tests.fakes.llm_server import Fail, FakeLLMServer, Reply
from tests.fakes.telegram_server import FakeTelegramServer


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> dict[str, str]:
    return assistant_env(tg, llm, tmp_path / "store")


def settings_for(env: dict[str, str], **extra: str) -> Settings:
    settings = fast_settings({**env, **extra}, retry_budget_seconds=10.0)  # reading a hostile file takes a while
    return settings.model_copy(update={"media": settings.media.model_copy(update={"album_wait_seconds": 0.3})})


def records(store_dir: Path, conversation_id: str = "42") -> list[dict[str, Any]]:
    path = next(store_dir.glob(f"*{conversation_id}*"))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_voice_message_is_transcribed_answered_and_recorded_with_its_file_id(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str], tmp_path: Path
) -> None:
    llm.script_transcription("remind me to water the plants")
    async with running(settings_for(env)):
        update_id = tg.add_voice(42, media.voice_note(3))
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.text == "echo: remind me to water the plants"
    [audio] = llm.audio_requests
    assert (audio.kind, audio.model, audio.format) == ("transcription", "whisper-1", "ogg")
    assert audio.file_name is not None
    assert audio.file_name.endswith(".oga")
    [user] = [record for record in records(tmp_path / "store") if record.get("role") == "user"]
    assert user["content"] == "remind me to water the plants"
    assert user["update_id"] == update_id
    [attachment] = user["attachments"]
    assert attachment["kind"] == "voice"
    assert attachment["text"] == "remind me to water the plants"
    assert tg.file_ref(attachment["file_id"]).kind == "voice"
    assert tg.voices(42) == []  # VOICE_REPLIES is off by default


async def test_voice_is_answered_with_voice_when_voice_replies_are_inbound(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    llm.script_transcription("what's the weather like")
    async with running(settings_for(env, VOICE_REPLIES="inbound")):
        tg.add_voice(42)
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
        [voice] = await tg.await_voices(42, timeout=10)
        tg.add_text_message(42, "and in writing?")
        await tg.await_sent(chat_id=42, count=2, timeout=10)
    assert reply.text == "echo: what's the weather like"
    speech = [request for request in llm.audio_requests if request.kind == "speech"]
    assert [request.input for request in speech] == ["echo: what's the weather like"]
    assert (speech[0].model, speech[0].voice, speech[0].response_format) == ("gpt-4o-mini-tts", "alloy", "opus")
    assert media.is_ogg_opus(voice.data)
    assert len(tg.voices(42)) == 1  # the text message was answered in text only


async def test_a_failing_speech_service_gets_one_line_and_the_conversation_goes_on(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    llm.script_transcription(lambda _request: Fail(401))
    async with running(settings_for(env)):
        tg.add_voice(42)
        tg.add_text_message(42, "are you there?")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=10)
    assert [message.text for message in sent] == [texts.VOICE_FAILED, "echo: are you there?"]


async def test_voice_input_turned_off_is_said_in_one_line(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(settings_for(env, TRANSCRIPTION_MODEL="off")):
        tg.add_voice(42)
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.text == texts.VOICE_OFF
    assert llm.audio_requests == []
    assert tg.downloads == []


async def test_a_photo_reaches_the_model_as_an_image_with_its_caption(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str], tmp_path: Path
) -> None:
    async with running(settings_for(env)):
        tg.add_photo(42, "what is this?", media.jpeg(4000, 3000))
        [reply] = await tg.await_sent(chat_id=42, timeout=20)
        tg.add_text_message(42, "and its colours?")
        await tg.await_sent(chat_id=42, count=2, timeout=10)
    assert reply.text == "echo: what is this?"
    first, second = llm.requests
    [image] = first.images
    assert (image.width, image.height, image.format) == (1280, 960, "jpeg")  # Telegram's largest size within 1568
    assert [shown.digest for shown in second.images] == [image.digest]  # the history shows it again
    [user, _] = [record for record in records(tmp_path / "store") if record.get("role") == "user"]
    [attachment] = user["attachments"]
    assert (attachment["kind"], attachment["width"], attachment["height"]) == ("photo", 1280, 960)
    assert tg.file_ref(attachment["file_id"]).kind == "photo"


async def pending_updates(store_dir: Path) -> list[dict[str, Any]]:
    from stores.file_ingress import INGRESS_FILE, FileIngressLog

    async with FileIngressLog(store_dir / INGRESS_FILE) as ingress:
        return await ingress.pending()


async def test_an_album_is_one_turn_and_all_its_updates_are_acknowledged(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str], tmp_path: Path
) -> None:
    async with running(settings_for(env)):
        update_ids = tg.add_album(42, 3, caption="compare these")
        after = tg.add_text_message(42, "which is best?")  # waits behind the album, so it stays second
        sent = await tg.await_sent(chat_id=42, count=2, timeout=15)
        await tg.await_calls("getUpdates", count=tg.calls.count("getUpdates") + 1, timeout=10)
    assert [message.text for message in sent] == ["echo: compare these", "echo: which is best?"]
    album, text = llm.requests
    assert len(album.images) == 3
    assert text.last_user_text == "which is best?"
    assert tg.confirmed_offset > max(*update_ids, after)
    assert await pending_updates(tmp_path / "store") == []
    users = [record for record in records(tmp_path / "store") if record.get("role") == "user"]
    assert [(user["update_id"], len(user.get("attachments", []))) for user in users] == [(update_ids[0], 3), (after, 0)]


async def test_an_image_sent_as_a_file_is_shown_and_a_pdf_is_read_with_its_name(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    pdf = media.pdf_with_text(["Quarterly report", "Revenue grew by 12 percent."])
    async with running(settings_for(env)):
        tg.add_document(42, "scan.png", media.png(2000, 1000), caption="what does it show?")
        tg.add_document(42, "report.pdf", pdf, caption="summarise")
        await tg.await_sent(chat_id=42, count=2, timeout=20)
    image_request, pdf_request = llm.requests
    [image] = image_request.images
    assert (image.width, image.height) == (1568, 784)
    text = pdf_request.last_user_text
    assert text.startswith("summarise")
    assert '<document name="report.pdf">' in text
    assert "Revenue grew by 12 percent." in text


@pytest.mark.parametrize(
    ("name", "data", "mime", "problem"),
    [
        ("bomb.png", media.decompression_bomb_png(), "image/png", "too_large_image"),
        ("broken.png", media.corrupt_png(), "image/png", "corrupt_image"),
        ("bomb.pdf", media.pdf_bomb(1024), "application/pdf", "too_large"),
        ("scan.pdf", media.scanned_pdf(2), "application/pdf", "scanned"),
        ("notes.txt", b"\x00\x01binary\xff" * 100, "text/plain", "unsupported"),
    ],
)
async def test_hostile_or_unreadable_files_are_explained_and_the_conversation_goes_on(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str], name: str, data: bytes, mime: str, problem: str
) -> None:
    async with running(settings_for(env)):
        tg.add_document(42, name, data, mime)
        tg.add_text_message(42, "still there?")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=20)
    assert sent[0].text == texts.FILE_PROBLEMS[problem].format(name=f"“{name}”")
    assert sent[1].text == "echo: still there?"
    assert [request.last_user_text for request in llm.requests] == ["still there?"]


async def test_a_file_over_telegrams_limit_is_explained_without_downloading(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(settings_for(env)):
        tg.add_document(42, "huge.pdf", b"%PDF-1.7 small really", "application/pdf", file_size=25 * 1024 * 1024)
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.text == texts.FILE_TOO_BIG.format(name="“huge.pdf”", limit=20)
    assert "getFile" not in tg.calls
    assert tg.downloads == []


async def test_videos_stickers_and_locations_are_explained(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(settings_for(env)):
        tg.add_video(42, caption="look at this")
        tg.add_sticker(42)
        tg.add_location(42)
        sent = await tg.await_sent(chat_id=42, count=3, timeout=10)
    assert sorted(message.text for message in sent) == sorted(
        [texts.NOT_READ["video"], texts.NOT_READ["sticker"], texts.NOT_READ["location"]]
    )
    assert llm.requests == []


async def test_a_model_that_cannot_see_is_told_once_and_images_are_left_out_after(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    llm.refuse_images = True
    async with running(settings_for(env)):
        tg.add_photo(42, "what is this?")
        [first] = await tg.await_sent(chat_id=42, timeout=15)
        tg.add_text_message(42, "ok, in words then")
        tg.add_photo(42, "and this one?")
        sent = await tg.await_sent(chat_id=42, count=3, timeout=15)
    assert first.text.startswith(texts.CANNOT_SEE_IMAGES)  # one line, then the answer without the image
    assert first.text.endswith("what is this?")
    assert sent[1].text == "echo: ok, in words then"
    assert sent[2].text == f"echo: {IMAGE_NOT_SHOWN}\n\nand this one?"
    refused, probe, *later = llm.requests
    assert refused.rejection is not None
    assert probe.rejection is None
    assert all(request.images == [] and request.rejection is None for request in later)
    async with running(settings_for(env)):  # a later activation remembers it (the notice is recorded)
        tg.add_photo(42, "and after a restart?")
        await tg.await_sent(chat_id=42, count=4, timeout=15)
    assert llm.requests[-1].rejection is None
    assert llm.requests[-1].images == []


async def test_after_a_restart_the_history_shows_the_photo_again_without_the_user(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(settings_for(env)):
        tg.add_photo(42, "remember this picture")
        await tg.await_sent(chat_id=42, timeout=15)
    downloads = len(tg.downloads)
    async with running(settings_for(env)):
        tg.add_text_message(42, "what was in the picture?")
        await tg.await_sent(chat_id=42, count=2, timeout=15)
    first, after_restart = llm.requests
    assert [image.digest for image in after_restart.images] == [image.digest for image in first.images]
    assert len(tg.downloads) == downloads + 1  # fetched again by its file_id


async def test_a_speech_failure_leaves_the_written_answer_and_long_answers_are_spoken_in_parts(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    long_answer = "\n\n".join(f"Paragraph {index}. " + "Some words to read aloud. " * 60 for index in range(6))
    llm.script([Reply("short answer"), Reply(long_answer)])
    llm.script_speech([Fail(400)])  # the first answer's speech is refused; the rest are spoken
    async with running(settings_for(env, VOICE_REPLIES="always")):
        tg.add_text_message(42, "first")
        tg.add_text_message(42, "second")
        written = await tg.await_sent(chat_id=42, count=2, timeout=30)
        voices = await tg.await_voices(42, count=3, timeout=30)
    assert written[0].text == "short answer"
    refused, *spoken_requests = [request for request in llm.audio_requests if request.kind == "speech"]
    assert refused.input == "short answer"  # answered 400: no voice for it, the written answer stands
    spoken = [request.input for request in spoken_requests]
    assert len(spoken) == len(voices) == 3
    assert all(len(text) <= 4096 for text in spoken)
    assert " ".join(spoken).split()[:5] == long_answer.split()[:5]
    assert all(media.is_ogg_opus(voice.data) for voice in voices)


async def test_in_a_group_an_album_addressed_by_its_caption_is_answered(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(settings_for(env)):
        tg.add_album(-100, 2, caption="@test_assistant_bot which one?", chat_type="supergroup")
        tg.add_album(-100, 2, caption="just for friends", chat_type="supergroup")
        tg.add_text_message(-100, "@test_assistant_bot hello", chat_type="supergroup")
        sent = await tg.await_sent(chat_id=-100, count=2, timeout=15)
    assert [message.text for message in sent] == ["echo: which one?", "echo: hello"]
    album, hello = llm.requests
    assert len(album.images) == 2
    # The unaddressed album never reached the conversation; the addressed one is in its history.
    assert [image.digest for image in hello.images] == [image.digest for image in album.images]


async def test_files_whose_names_and_types_lie_are_read_for_what_they_are(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(settings_for(env)):
        tg.add_document(42, "notes.txt", media.pdf_with_text("A PDF in disguise."), "text/plain")
        tg.add_document(42, "report.pdf", media.png(320, 200), "application/pdf")
        tg.add_audio(42, media.speech_mp3(), file_name="song.bin", mime_type="application/octet-stream")
        await tg.await_sent(chat_id=42, count=3, timeout=20)
    pdf, png, audio = llm.requests
    assert "A PDF in disguise." in pdf.last_user_text
    assert [(image.width, image.height) for image in png.images] == [(320, 200)]
    assert audio.last_user_text == "Transcript of audio.mp3."  # named by what its bytes are
    [transcription] = llm.audio_requests
    assert transcription.format == "mp3"


async def test_photos_reach_an_anthropic_model_as_image_blocks(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    anthropic = {"LLM_PROVIDER": "anthropic", "LLM_BASE_URL": llm.anthropic_base_url, "SPEECH_API_KEY": "sk-speech"}
    async with running(settings_for(env, **anthropic)):
        tg.add_photo(42, "what is this?", media.png(2000, 1500))
        [reply] = await tg.await_sent(chat_id=42, timeout=20)
    assert reply.text == "echo: what is this?"
    [request] = llm.requests
    assert request.provider == "anthropic"
    [image] = request.images
    assert (image.width, image.height, image.media_type) == (1280, 960, "image/jpeg")
