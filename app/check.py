"""`python main.py --check`: reach every dependency once and say, one line each, what answered.

The output is for a person, and only these lines go to stdout (logs go to stderr, see app/run.py)::

    telegram: ok (@my_bot, 310 ms)
    llm (openai): ok (model gpt-4o-mini answered 4 characters, 820 ms)
    store (file): ok (wrote, read and deleted a probe, 3 ms)
    mcp: ok (no server enabled)
    streaming: ok (on, answers grow as the model writes: model gpt-4o-mini streamed 4 characters in 1 pieces, 790 ms)
    speech: off (not configured)
    ...
    summary: ok (5 of 5 checks passed; features on: streaming)

Components are always checked. An optional feature prints `off (why)` or, when on, the result of
reaching its endpoint. A feature adds its line by adding one probe function to `FEATURES`: it reads
the settings and returns a `Feature` (on with a probe, or off with the reason).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from conf import Settings

__all__ = ["FEATURES", "Feature", "run_checks"]

Check = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Feature:
    """An optional feature as the settings have it: `on` with a `probe` that reaches its endpoint
    (None when it has none to reach), or off; `detail` says what is on or why it is off."""

    on: bool
    detail: str
    probe: Check | None = None


_NOT_CONFIGURED = Feature(False, "not configured")


def _streaming(settings: Settings) -> Feature:
    if not settings.telegram.stream_replies:
        return Feature(False, "whole answers: STREAM_REPLIES=off")
    if not settings.llm.stream:
        return Feature(False, "whole answers: the model does not stream (llm.stream: false)")
    return Feature(True, "answers grow as the model writes", lambda: _check_llm(settings, stream=True))


def _configured(settings: Settings, path: str) -> Any:
    """The setting at dotted `path`, or None while this version has no such setting."""
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part, None)
    return value or None


def _unprobed(settings: Settings, path: str) -> Feature:
    # The features below have no setting yet; whoever adds one replaces its probe with a real check.
    return _NOT_CONFIGURED if _configured(settings, path) is None else Feature(True, "configured, not probed")


def _speech(settings: Settings) -> Feature:
    speech = settings.speech.resolve(settings.llm)
    if not speech.transcription_on and speech.voice_replies == "off":
        return Feature(False, "TRANSCRIPTION_MODEL=off and VOICE_REPLIES=off")
    if not (speech.base_url or speech.api_key):
        return Feature(False, "not configured: set SPEECH_API_KEY or SPEECH_BASE_URL")
    model = speech.transcription_model if speech.transcription_on else speech.tts_model
    return Feature(True, model, lambda: _check_speech(settings))


def _webhook(settings: Settings) -> Feature:
    from app.scale import check_webhook

    if not settings.webhook.enabled:
        return Feature(False, "long polling")
    return Feature(True, settings.webhook.url, lambda: check_webhook(settings))


def _queue(settings: Settings) -> Feature:
    from app.scale import check_queue

    if not settings.queue.enabled:
        return Feature(False, "in-process")
    return Feature(True, settings.queue.url, lambda: check_queue(settings))


def _budget(settings: Settings) -> Feature:
    budget = settings.usage.daily_token_budget
    return Feature(True, f"{budget:,} tokens per user and day") if budget else Feature(False, "unlimited")


FEATURES: Mapping[str, Callable[[Settings], Feature]] = {
    "streaming": _streaming,
    "speech": _speech,
    "webhook": _webhook,
    "queue": _queue,
    "budget": _budget,
}
"""Optional features in the order they are printed: name -> probe of the settings."""


class _Report:
    """Writes the lines and keeps the tally for the summary."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.checked = 0
        self.failed: list[str] = []
        self.features_on: list[str] = []

    def line(self, name: str, state: str, detail: str) -> None:
        self._out.write(f"{name}: {state} ({detail})\n")
        self._out.flush()

    def result(self, name: str, ok: bool, detail: str) -> None:
        self.checked += 1
        if not ok:
            self.failed.append(name)
        self.line(name, "ok" if ok else "FAILED", detail)

    async def run(self, name: str, check: Check, prefix: str = "") -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(60):
                detail = await check()
        except Exception as exc:  # every failure is reported as a line, whatever its kind
            self.result(name, False, prefix + _reason(exc))
            return
        self.result(name, True, f"{prefix}{detail}, {round((time.perf_counter() - started) * 1000)} ms")

    def summary(self) -> int:
        features = ", ".join(self.features_on) or "none"
        if self.failed:
            failed = f"{len(self.failed)} of {self.checked} checks failed: {', '.join(self.failed)}"
            self.line("summary", "FAILED", failed)
            return 1
        self.line("summary", "ok", f"{self.checked} of {self.checked} checks passed; features on: {features}")
        return 0


async def run_checks(
    settings: Settings,
    mcp_servers: Mapping[str, Any],
    out: TextIO,
    *,
    telegram: bool = True,
    features: Mapping[str, Callable[[Settings], Feature]] = FEATURES,
) -> int:
    """Check every component and optional feature, one line each, then a summary; 0 if all ok, 1 if not."""
    report = _Report(out)
    if telegram:
        await report.run("telegram", lambda: _check_telegram(settings))
    await report.run(f"llm ({settings.llm.provider})", lambda: _check_llm(settings))
    await report.run(f"store ({settings.store.backend})", lambda: _check_store(settings))
    await _check_mcp(mcp_servers, report)
    for name, probe in features.items():
        feature = probe(settings)
        if not feature.on:
            report.line(name, "off", feature.detail)
            continue
        report.features_on.append(name)
        if feature.probe is None:
            report.line(name, "on", feature.detail)
        else:
            await report.run(name, feature.probe, prefix=f"on, {feature.detail}: ")
    return report.summary()


async def _check_mcp(mcp_servers: Mapping[str, Any], report: _Report) -> None:
    if not mcp_servers:
        report.line("mcp", "ok", "no server enabled")
        return
    from tools import check_servers

    for result in await check_servers(mcp_servers, timeout=30.0):
        detail = f"{len(result.tools)} tools: {', '.join(result.tools)}" if result.ok else result.reason
        report.result(f"mcp {result.name}", result.ok, detail)


def _reason(exc: BaseException) -> str:
    from ops.logs import redact

    text = str(exc) or type(exc).__name__
    return str(redact(f"{type(exc).__name__}: {text}" if str(exc) else text))


async def _check_telegram(settings: Settings) -> str:
    from telegram import Bot

    bot = Bot(settings.telegram.token, base_url=settings.telegram.api_base_url)
    async with bot:
        me = bot.bot
    return f"@{me.username}"


async def _check_llm(settings: Settings, *, stream: bool = False) -> str:
    from llm import ModelRequest, UserRecord, build_chat_model

    llm = settings.llm.model_copy(update={"retry_budget_seconds": 5.0, "max_output_tokens": 16, "stream": stream})
    model = build_chat_model(llm, settings.backoff)
    pieces: list[str] = []
    try:
        reply = await model.complete(
            ModelRequest("Answer with one word.", [UserRecord(text="ping")], on_delta=pieces.append if stream else None)
        )
    finally:
        await model.aclose()
    if stream:
        return f"model {settings.llm.model} streamed {len(reply.text)} characters in {len(pieces)} pieces"
    return f"model {settings.llm.model} answered {len(reply.text)} characters"


async def _check_speech(settings: Settings) -> str:
    """Transcribe half a second of silence (or, with voice input off, synthesise a word)."""
    import io
    import wave

    from llm.speech import SpeechClient
    from ops.backoff import Backoff

    speech = settings.speech.resolve(settings.llm)
    client = SpeechClient(
        base_url=speech.base_url,
        api_key=speech.api_key,
        transcription_model=speech.transcription_model,
        tts_model=speech.tts_model,
        tts_voice=speech.tts_voice,
        backoff=Backoff(settings.backoff),
        timeout_seconds=30.0,
        retry_budget_seconds=5.0,
    )
    try:
        if not speech.transcription_on:
            return f"the endpoint answered {len(await client.synthesise('ok'))} bytes of voice"
        silence = io.BytesIO()
        with wave.open(silence, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16_000)
            out.writeframes(b"\x00\x00" * 8_000)
        await client.transcribe(silence.getvalue(), "check.wav", "audio/wav")
        return "the endpoint answered"
    finally:
        await client.aclose()


async def _check_store(settings: Settings) -> str:
    from stores import build_stores

    store, ingress = build_stores(settings.store, settings.backoff, read_only_ingress=True)
    probe = f"check-probe-{uuid.uuid4().hex}"
    async with store, ingress:
        record = {"seq": 0, "type": "probe", "at": time.time()}
        await store.append(probe, [record])
        loaded = await store.load(probe)
        await store.delete(probe)
        if [item.get("at") for item in loaded] != [record["at"]]:
            raise RuntimeError("the probe record did not read back")
        await ingress.pending()
    return "wrote, read and deleted a probe"
