"""The fake model server's speech endpoints, through the official openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI, BadRequestError, InternalServerError

from tests.fakes import media
from tests.fakes.llm_server import Fail, FakeAudioRequest, FakeLLMServer


@pytest.fixture
async def client(llm: FakeLLMServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=llm.openai_base_url, api_key="test-key", max_retries=0) as sdk:
        yield sdk


async def test_a_voice_note_is_transcribed(llm: FakeLLMServer, client: AsyncOpenAI) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("voice.ogg", media.voice_note(4), "audio/ogg")
    )
    assert result.text == "Transcript of a 4.0 second recording."
    [request] = llm.audio_requests
    assert (request.kind, request.model, request.file_name, request.format) == (
        "transcription",
        "whisper-1",
        "voice.ogg",
        "ogg",
    )
    assert request.duration == pytest.approx(4.0)
    assert request.data == media.voice_note(4)


async def test_transcripts_can_be_scripted(llm: FakeLLMServer, client: AsyncOpenAI) -> None:
    llm.script_transcription(["remind me to water the plants", Fail(500)])
    first = await client.audio.transcriptions.create(model="whisper-1", file=("a.oga", media.voice_ogg()))
    assert first.text == "remind me to water the plants"
    with pytest.raises(InternalServerError):
        await client.audio.transcriptions.create(model="whisper-1", file=("a.oga", media.voice_ogg()))

    def by_language(request: FakeAudioRequest) -> str:
        return f"[{request.fields.get('language')}] hallo"

    llm.script_transcription(by_language)
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.mp3", media.speech_mp3()), language="de", response_format="text"
    )
    assert text == "[de] hallo\n"


async def test_other_response_formats(client: AsyncOpenAI) -> None:
    verbose = await client.audio.transcriptions.create(
        model="whisper-1", file=("tone.wav", media.wav(1.5)), response_format="verbose_json"
    )
    assert verbose.duration == pytest.approx(1.5)
    assert verbose.segments is not None
    assert verbose.segments[0].text == verbose.text
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.flac", media.speech_flac()), response_format="srt"
    )
    assert srt.startswith("1\n00:00:00,000 --> ")


@pytest.mark.parametrize(
    ("file", "model", "fmt", "error"),
    [
        (("voice.txt", media.voice_ogg()), "whisper-1", "json", "Invalid file format. Supported formats:"),
        (("voice.ogg", b""), "whisper-1", "json", "Audio file is too short"),
        (("voice.ogg", b"this is no audio at all"), "whisper-1", "json", "could not be decoded"),
        (("voice.ogg", media.voice_ogg()[:-40]), "whisper-1", "json", "could not be decoded"),
        (("voice.ogg", media.voice_ogg()), "", "json", "you must provide a model parameter"),
        (("voice.ogg", media.voice_ogg()), "gpt-4o-transcribe", "srt", "is not compatible with model"),
    ],
)
async def test_transcription_refuses_what_openai_refuses(
    llm: FakeLLMServer, client: AsyncOpenAI, file: tuple[str, bytes], model: str, fmt: str, error: str
) -> None:
    with pytest.raises(BadRequestError, match=error):
        await client.audio.transcriptions.create(model=model, file=file, response_format=fmt)  # type: ignore[call-overload]
    assert llm.audio_requests[0].rejection is not None


async def test_speech_is_real_ogg_opus_of_a_plausible_length(llm: FakeLLMServer, client: AsyncOpenAI) -> None:
    text = "The weather is fine today. " * 5
    response = await client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input=text, response_format="opus"
    )
    audio = response.content
    assert audio.startswith(b"OggS")
    info = media.opus_info(audio)
    assert info.duration == pytest.approx(len(text) / 15, abs=0.05)
    [request] = llm.audio_requests
    assert (request.kind, request.voice, request.input) == ("speech", "alloy", text)


async def test_speech_in_other_formats(client: AsyncOpenAI) -> None:
    mp3 = (await client.audio.speech.create(model="tts-1", voice="nova", input="hi")).content
    wav = (await client.audio.speech.create(model="tts-1", voice="nova", input="hi", response_format="wav")).content
    assert mp3 == media.speech_mp3()
    assert wav.startswith(b"RIFF")
    assert wav[8:12] == b"WAVE"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"input": "x" * 4097}, "at most 4096 characters"),
        ({"voice": "darth"}, "Invalid value: 'darth'"),
        ({"response_format": "aac"}, "cannot make AAC"),
        ({"speed": 5.0}, "between 0.25 and 4.0"),
        ({"model": "tts-1", "instructions": "whisper"}, "Instructions are not supported"),
    ],
)
async def test_speech_refuses_what_openai_refuses(client: AsyncOpenAI, kwargs: dict[str, object], error: str) -> None:
    arguments: dict[str, object] = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": "hello"} | kwargs
    with pytest.raises(BadRequestError, match=error):
        await client.audio.speech.create(**arguments)  # type: ignore[arg-type]


async def test_speech_failures_can_be_scripted(llm: FakeLLMServer, client: AsyncOpenAI) -> None:
    llm.script_speech([Fail(503), None])
    with pytest.raises(InternalServerError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="one", response_format="opus")
    second = await client.audio.speech.create(model="tts-1", voice="alloy", input="two", response_format="opus")
    assert media.is_ogg_opus(second.content)
