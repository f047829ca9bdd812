"""Speech endpoints of the fake model server (OpenAI's, as Groq and local whisper servers offer them).

POST /v1/audio/transcriptions (multipart: file, model, response_format json|text|srt|verbose_json|vtt,
language, prompt, temperature) answers `{"text": ...}` (or the text itself for `text`). It refuses,
as OpenAI does: no model, no file, a file name whose extension is not a supported format, an empty
file ("Audio file is too short"), bytes that are no audio it knows or a broken Ogg ("could not be
decoded"), more than 25 MB (413), srt/vtt/verbose_json for the gpt-4o transcribe models.

POST /v1/audio/speech (JSON: model, input of at most 4096 characters, voice, response_format
mp3|opus|flac|wav|pcm, speed 0.25-4) answers real audio: `opus` is an Ogg Opus stream about as long
as the text would take to say (15 characters a second), `wav`/`pcm` a tone of that length, `mp3` and
`flac` one second of speech-like sound from tests/fixtures. `aac` is the one format the fake cannot
make (400, saying so).

Script what they answer with `FakeLLMServer.script_transcription` / `script_speech`: a transcript
string (transcriptions), a Fail or Hang, a list of those (one per request), or a handler called with
the FakeAudioRequest (None from it means the default).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from tests.fakes import media

if TYPE_CHECKING:
    from tests.fakes.llm_server import FakeLLMServer

TRANSCRIPTION_FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
MAX_AUDIO_BYTES = 25 * 1024 * 1024
VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse", "marin", "cedar"}
)
SPEECH_FORMATS = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
CHARS_PER_SECOND_SPOKEN = 15.0
_TOKEN_ONLY_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")


@dataclass(slots=True)
class FakeAudioRequest:
    """A speech request the server received. Transcriptions: `file_name`, `data`, `format` (what the bytes
    are), `duration` (seconds, when the format tells); speech: `input`, `voice`. `rejection` is set when refused."""

    kind: Literal["transcription", "speech"]
    path: str
    headers: dict[str, str]
    fields: dict[str, str]
    model: str | None = None
    response_format: str = ""
    file_name: str | None = None
    data: bytes = b""
    format: str = ""
    duration: float | None = None
    input: str = ""
    voice: str | None = None
    received_at: float = field(default_factory=time.monotonic)
    rejection: str | None = None


SpeechHandler = Callable[[FakeAudioRequest], Any]


class _Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def audio_format(data: bytes) -> str:
    """What audio some bytes are, by signature: ogg, mp3, flac, wav, m4a/mp4, webm, or ""."""
    if data.startswith(b"OggS"):
        return "ogg"
    if data.startswith(b"fLaC"):
        return "flac"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[4:8] == b"ftyp":
        return "m4a" if data[8:11] in (b"M4A", b"M4B") else "mp4"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return ""


def audio_duration(data: bytes, fmt: str) -> float | None:
    """Seconds of audio where the container says it cheaply (Ogg Opus, WAV); None otherwise."""
    if fmt == "ogg":
        return media.opus_info(data).duration
    if fmt == "wav" and len(data) >= 44:
        channels, rate = struct.unpack_from("<HI", data, 22)
        bits = struct.unpack_from("<H", data, 34)[0]
        return (len(data) - 44) / max(1, rate * channels * bits // 8)
    return None


class SpeechMixin:
    """The audio endpoints of FakeLLMServer."""

    speech_latency: float = 0.0
    """Seconds each audio request waits before it is answered."""

    def _init_speech(self) -> None:
        self.audio_requests: list[FakeAudioRequest] = []
        """Audio requests received (transcriptions and speech), in order."""
        self._transcripts: collections.deque[Any] = collections.deque()
        self._transcript_handler: SpeechHandler | None = None
        self._speech_script: collections.deque[Any] = collections.deque()
        self._speech_handler: SpeechHandler | None = None

    def script_transcription(self, spec: Any) -> None:
        """What the next transcriptions answer: a transcript, Fail, Hang, a list of those (one per request,
        then the default), or a handler of FakeAudioRequest (None from it: the default)."""
        self._transcripts, self._transcript_handler = _script(spec)

    def script_speech(self, spec: Any) -> None:
        """What the next speech requests answer: Fail, Hang, None (the default audio), a list of those, or
        a handler of FakeAudioRequest."""
        self._speech_script, self._speech_handler = _script(spec)

    def _next_audio_spec(self, request: FakeAudioRequest) -> Any:
        queue, handler = (
            (self._transcripts, self._transcript_handler)
            if request.kind == "transcription"
            else (self._speech_script, self._speech_handler)
        )
        if queue:
            return queue.popleft()
        return handler(request) if handler is not None else None

    # -- transcription -----------------------------------------------------------------------------

    async def _transcriptions(self: FakeLLMServer, http: web.Request) -> web.StreamResponse:
        request = FakeAudioRequest("transcription", http.path, _headers(http), {})
        try:
            await SpeechMixin._read_transcription(http, request)
        except _Refused as exc:
            return self._refuse_audio(request, exc)
        return await self._answer_audio(request, lambda text: _transcript_response(request, text))

    @staticmethod
    async def _read_transcription(http: web.Request, request: FakeAudioRequest) -> None:
        if not request.headers.get("authorization", "").strip():
            raise _Refused(401, "You didn't provide an API key.", code="invalid_api_key")
        if (http.content_length or 0) > MAX_AUDIO_BYTES + 1_000_000:
            raise _Refused(413, _too_large(http.content_length or 0))
        if http.content_type != "multipart/form-data":
            raise _Refused(400, "Invalid Content-Type header; expected multipart/form-data.")
        form = await http.post()
        upload = None
        for key, value in form.items():
            if isinstance(value, web.FileField):
                if key == "file":
                    upload = value
            else:
                request.fields[key] = str(value)
        request.model = request.fields.get("model")
        request.response_format = request.fields.get("response_format") or "json"
        if not request.model:
            raise _Refused(400, "you must provide a model parameter", param="model")
        if upload is None:
            raise _Refused(400, "Missing required parameter: 'file'.", param="file")
        request.file_name = upload.filename
        request.data = upload.file.read()
        _check_transcription(request)

    # -- speech ------------------------------------------------------------------------------------

    async def _speech(self: FakeLLMServer, http: web.Request) -> web.StreamResponse:
        request = FakeAudioRequest("speech", http.path, _headers(http), {})
        try:
            body = await _speech_body(http, request)
            _check_speech(body, request)
        except _Refused as exc:
            return self._refuse_audio(request, exc)
        return await self._answer_audio(request, lambda _none: _speech_response(request))

    # -- answering ---------------------------------------------------------------------------------

    def _refuse_audio(self: FakeLLMServer, request: FakeAudioRequest, exc: _Refused) -> web.Response:
        request.rejection = exc.message
        self._arrive_audio(request)
        error = {"message": exc.message, "type": "invalid_request_error", "param": exc.param, "code": exc.code}
        body = {"error": error}
        return web.json_response(body, status=exc.status)

    def _arrive_audio(self: FakeLLMServer, request: FakeAudioRequest) -> None:
        with self._arrived:
            self.audio_requests.append(request)
            self._arrived.notify_all()

    async def _answer_audio(
        self: FakeLLMServer, request: FakeAudioRequest, respond: Callable[[Any], web.StreamResponse]
    ) -> web.StreamResponse:
        from tests.fakes._llm_responses import _error_response
        from tests.fakes._llm_specs import Fail, Hang

        self._arrive_audio(request)
        try:
            spec = self._next_audio_spec(request)
        except Exception as exc:  # a broken test handler: answer 500 now, fail the test at close()
            self.handler_errors.append(exc)
            return _error_response("openai", 500, f"fake server handler failed: {exc!r}")
        if isinstance(spec, Hang):
            assert self._stop is not None
            await self._stop.wait()
            return _error_response("openai", 503, "server shutting down")
        if self.speech_latency > 0:
            await asyncio.sleep(self.speech_latency)
        if isinstance(spec, Fail):
            return _error_response("openai", spec.status, "fake failure", spec.retry_after, spec.body)
        return respond(spec)

    def wait_for_audio_requests(self: FakeLLMServer, n: int, timeout: float = 10.0) -> list[FakeAudioRequest]:
        """Block until `n` audio requests have arrived; return them. Raises TimeoutError."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.audio_requests) >= n, timeout):
                raise TimeoutError(f"{len(self.audio_requests)} of {n} audio requests arrived within {timeout} s")
            return list(self.audio_requests)


def _script(spec: Any) -> tuple[collections.deque[Any], SpeechHandler | None]:
    if callable(spec):
        return collections.deque(), spec
    if isinstance(spec, list | tuple):
        return collections.deque(spec), None
    return collections.deque([spec]), None


def _too_large(size: int) -> str:
    return f"Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded ({size} bytes read)"


def _headers(http: web.Request) -> dict[str, str]:
    return {key.lower(): value for key, value in http.headers.items()}


def _check_transcription(request: FakeAudioRequest) -> None:
    supported = f"Invalid file format. Supported formats: {list(TRANSCRIPTION_FORMATS)}"
    extension = os.path.splitext(request.file_name or "")[1].lower().lstrip(".")
    if extension not in TRANSCRIPTION_FORMATS:
        raise _Refused(400, supported, code="invalid_value")
    if not request.data:
        raise _Refused(400, "Audio file is too short. Minimum audio length is 0.1 seconds.", code="audio_too_short")
    if len(request.data) > MAX_AUDIO_BYTES:
        raise _Refused(413, _too_large(len(request.data)))
    request.format = audio_format(request.data)
    undecodable = _Refused(400, "The audio file could not be decoded or its format is not supported.")
    if not request.format:
        raise undecodable
    try:
        request.duration = audio_duration(request.data, request.format)
    except (media.OggError, struct.error) as exc:
        raise undecodable from exc
    if request.duration is not None and request.duration < 0.1:
        raise _Refused(400, "Audio file is too short. Minimum audio length is 0.1 seconds.", code="audio_too_short")
    fmt = request.response_format
    if fmt not in ("json", "text", "srt", "verbose_json", "vtt"):
        raise _Refused(400, f"Invalid value: '{fmt}'.", param="response_format")
    if request.model in _TOKEN_ONLY_MODELS and fmt not in ("json", "text"):
        raise _Refused(
            400,
            f"response_format '{fmt}' is not compatible with model '{request.model}'. Use 'json' or 'text' instead.",
            param="response_format",
        )


def _default_transcript(request: FakeAudioRequest) -> str:
    if request.duration is not None:
        return f"Transcript of a {request.duration:.1f} second recording."
    return f"Transcript of {request.file_name}."


def _transcript_response(request: FakeAudioRequest, scripted: Any) -> web.StreamResponse:
    text = scripted if isinstance(scripted, str) else _default_transcript(request)
    seconds = request.duration if request.duration is not None else 1.0
    fmt = request.response_format
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt in ("srt", "vtt"):
        end = time.strftime("%H:%M:%S", time.gmtime(seconds)) + (",000" if fmt == "srt" else ".000")
        start = "00:00:00,000" if fmt == "srt" else "00:00:00.000"
        body = f"1\n{start} --> {end}\n{text}\n" if fmt == "srt" else f"WEBVTT\n\n{start} --> {end}\n{text}\n"
        return web.Response(text=body, content_type="text/plain")
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [], "temperature": 0.0}
        payload: dict[str, Any] = {
            "task": "transcribe",
            "language": request.fields.get("language") or "english",
            "duration": seconds,
            "text": text,
            "segments": [segment],
        }
        return web.json_response(payload)
    usage: dict[str, Any]
    if request.model in _TOKEN_ONLY_MODELS:
        audio_tokens = math.ceil(seconds * 10)
        out = math.ceil(len(text) / 4)
        usage = {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": out,
            "total_tokens": audio_tokens + out,
        }
    else:
        usage = {"type": "duration", "seconds": math.ceil(seconds)}
    return web.json_response({"text": text, "usage": usage})


async def _speech_body(http: web.Request, request: FakeAudioRequest) -> dict[str, Any]:
    if not request.headers.get("authorization", "").strip():
        raise _Refused(401, "You didn't provide an API key.", code="invalid_api_key")
    try:
        body = json.loads(await http.read())
    except ValueError:
        raise _Refused(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _Refused(400, "We could not parse the JSON body of your request.")
    request.fields = {k: str(v) for k, v in body.items()}
    return body


def _check_speech(body: dict[str, Any], request: FakeAudioRequest) -> None:
    request.model = body.get("model") if isinstance(body.get("model"), str) else None
    if not request.model:
        raise _Refused(400, "you must provide a model parameter", param="model")
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise _Refused(400, "Missing required parameter: 'input'.", param="input")
    request.input = text
    if len(text) > 4096:
        too_long = (
            "[{'type': 'string_too_long', 'loc': ('body', 'input'), "
            "'msg': 'String should have at most 4096 characters'}]"
        )
        raise _Refused(400, too_long, param="input")
    voice = body.get("voice")
    request.voice = voice if isinstance(voice, str) else None
    if voice not in VOICES:
        raise _Refused(
            400, f"Invalid value: '{voice}'. Supported values are: {', '.join(sorted(VOICES))}.", param="voice"
        )
    request.response_format = str(body.get("response_format") or "mp3")
    if request.response_format not in SPEECH_FORMATS:
        raise _Refused(400, f"Invalid value: '{request.response_format}'.", param="response_format")
    if request.response_format == "aac":
        cannot = "the fake server cannot make AAC audio; use opus, mp3, flac, wav or pcm"
        raise _Refused(400, cannot, param="response_format")
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        raise _Refused(400, "Invalid value for 'speed': must be between 0.25 and 4.0.", param="speed")
    if body.get("instructions") and request.model in ("tts-1", "tts-1-hd"):
        raise _Refused(400, "Instructions are not supported for tts-1 and tts-1-hd models.", param="instructions")


def _speech_response(request: FakeAudioRequest) -> web.StreamResponse:
    seconds = max(0.5, min(600.0, len(request.input) / CHARS_PER_SECOND_SPOKEN))
    request.duration = seconds
    fmt = request.response_format
    if fmt == "opus":
        data = media.voice_note(round(seconds * 50) / 50)
    elif fmt == "wav":
        data = media.wav(seconds, 24_000)
    elif fmt == "pcm":
        data = media.wav(seconds, 24_000)[44:]
    elif fmt == "flac":
        data = media.speech_flac()
    else:
        data = media.speech_mp3()
    return web.Response(body=data, content_type=SPEECH_FORMATS[fmt])
