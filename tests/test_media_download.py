"""Downloading what users send through the fake Bot API (getFile, then the file URL, real bytes): limits
checked before and while downloading, retries, timeouts, concurrency, and the token kept out of logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog
from telegram import Bot

from actors.media import FileTooBig, FileUnavailable
from channels.telegram.client import file_base_url
from channels.telegram.media import TELEGRAM_DOWNLOAD_LIMIT, TelegramFiles
from conf.settings import BackoffSettings, LogSettings
from ops import logs
from ops.backoff import Backoff
from tests.fakes import media
from tests.fakes.telegram_server import FakeTelegramServer

FAST = Backoff(BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0))


@pytest.fixture
async def files(tg: FakeTelegramServer) -> AsyncIterator[TelegramFiles]:
    async with Bot(tg.token, base_url=tg.base_url, base_file_url=file_base_url(tg.base_url)) as bot:
        source = TelegramFiles(bot, FAST, timeout_seconds=3.0)
        try:
            yield source
        finally:
            await source.aclose()


def test_the_file_url_is_beside_the_api_url() -> None:
    assert file_base_url("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_base_url("http://127.0.0.1:8081/bot/") == "http://127.0.0.1:8081/file/bot"


async def test_a_file_is_downloaded_with_its_path(tg: FakeTelegramServer, files: TelegramFiles) -> None:
    ref = tg.add_file(media.voice_ogg(), "audio/ogg", kind="voice")
    downloaded = await files.download(ref.file_id, declared_size=ref.file_size, max_bytes=1_000_000)
    assert downloaded.data == media.voice_ogg()
    assert downloaded.file_path.endswith(".oga")
    assert tg.calls.count("getFile") == 1


async def test_a_declared_size_over_the_limit_is_refused_before_any_request(
    tg: FakeTelegramServer, files: TelegramFiles
) -> None:
    ref = tg.add_file(b"x" * 100, kind="document", file_size=30 * 1024 * 1024)
    with pytest.raises(FileTooBig) as caught:
        await files.download(ref.file_id, declared_size=ref.file_size, max_bytes=50 * 1024 * 1024)
    assert caught.value.limit == TELEGRAM_DOWNLOAD_LIMIT
    assert "getFile" not in tg.calls


async def test_telegrams_file_is_too_big_is_understood(tg: FakeTelegramServer, files: TelegramFiles) -> None:
    ref = tg.add_file(b"x" * 100, kind="document", file_size=21 * 1024 * 1024)
    with pytest.raises(FileTooBig) as caught:
        await files.download(ref.file_id, declared_size=None, max_bytes=TELEGRAM_DOWNLOAD_LIMIT)
    assert caught.value.limit == TELEGRAM_DOWNLOAD_LIMIT
    assert tg.downloads == []


async def test_a_file_larger_than_declared_is_cut_off_while_streaming(
    tg: FakeTelegramServer, files: TelegramFiles
) -> None:
    ref = tg.add_file(b"y" * 300_000, kind="document", file_size=10)  # its size lies
    with pytest.raises(FileTooBig):
        await files.download(ref.file_id, declared_size=10, max_bytes=100_000)


async def test_server_errors_and_expired_links_are_retried(tg: FakeTelegramServer, files: TelegramFiles) -> None:
    ref = tg.add_file(media.png(), "image/png", kind="photo")
    tg.fail_next("download", 502)
    tg.fail_next("download", 404)
    tg.fail_next("getFile", 429, retry_after=0)
    downloaded = await files.download(ref.file_id, declared_size=None, max_bytes=1_000_000)
    assert downloaded.data == media.png()
    assert tg.calls.count("getFile") == 4  # each attempt asks for a fresh link


@pytest.fixture
async def bot_with_files(tg: FakeTelegramServer) -> AsyncIterator[Bot]:
    async with Bot(tg.token, base_url=tg.base_url, base_file_url=file_base_url(tg.base_url)) as bot:
        yield bot


@pytest.fixture
async def impatient(tg: FakeTelegramServer) -> AsyncIterator[TelegramFiles]:
    async with Bot(tg.token, base_url=tg.base_url, base_file_url=file_base_url(tg.base_url)) as bot:
        source = TelegramFiles(bot, FAST, timeout_seconds=0.5)
        try:
            yield source
        finally:
            await source.aclose()


async def test_a_download_that_keeps_failing_is_retried_then_given_up_in_time(
    tg: FakeTelegramServer, bot_with_files: Bot
) -> None:
    ref = tg.add_file(media.png(), "image/png", kind="photo")
    files = TelegramFiles(bot_with_files, FAST, timeout_seconds=2.0)
    tg.fail_next("download", 500, count=1000)
    started = time.monotonic()
    try:
        with pytest.raises(FileUnavailable):
            await files.download(ref.file_id, declared_size=None, max_bytes=1_000_000)
    finally:
        await files.aclose()
    assert time.monotonic() - started < 6.0
    assert tg.calls.count("download") >= 2  # retried under the backoff policy before giving up


async def test_a_download_that_hangs_gives_up_in_time(tg: FakeTelegramServer, impatient: TelegramFiles) -> None:
    ref = tg.add_file(media.png(), "image/png", kind="photo")
    tg.download_delay = 5.0
    started = time.monotonic()
    with pytest.raises(FileUnavailable):
        await impatient.download(ref.file_id, declared_size=None, max_bytes=1_000_000)
    assert time.monotonic() - started < 4.0  # 0.5 s, and a loaded machine's margin


async def test_a_file_telegram_does_not_know_is_unavailable(files: TelegramFiles) -> None:
    with pytest.raises(FileUnavailable):
        await files.download("no-such-file", declared_size=None, max_bytes=1000)


async def test_downloads_of_different_chats_run_side_by_side(tg: FakeTelegramServer, files: TelegramFiles) -> None:
    refs = [tg.add_file(media.png(seed=index), "image/png", kind="photo") for index in range(6)]
    tg.download_delay = 0.5
    started = time.monotonic()
    results = await asyncio.gather(
        *(files.download(ref.file_id, declared_size=ref.file_size, max_bytes=1_000_000) for ref in refs)
    )
    assert [result.data for result in results] == [tg.file_bytes(ref.file_id) for ref in refs]
    assert tg.max_concurrent_downloads == 6
    assert time.monotonic() - started < 2.5


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs._reset_for_tests()
    logs.configure_logging(LogSettings(level="DEBUG"), secrets=[FakeTelegramServer().token], stream=stream)
    yield stream
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    for name in (*logs.NOISY_LOGGERS, logs.METRICS_LOGGER_NAME):
        logging.getLogger(name).setLevel(logging.NOTSET)


async def test_the_token_in_the_file_url_never_reaches_a_log_line(
    tg: FakeTelegramServer, files: TelegramFiles, debug_log: io.StringIO
) -> None:
    ref = tg.add_file(media.png(), "image/png", kind="photo")
    tg.fail_next("download", 502)
    await files.download(ref.file_id, declared_size=None, max_bytes=1_000_000)
    lines = [json.loads(line) for line in debug_log.getvalue().splitlines()]
    ours = [line["event"] for line in lines if line.get("logger") == "channels.telegram.media"]
    assert ours == ["telegram_download_retry", "telegram_downloaded"]  # a failed download and its retry, logged
    shown = [line for line in lines if "/bot" in json.dumps(line)]
    assert shown  # this Bot's httpx logs each getFile URL at DEBUG: the token was there to leak
    assert tg.token not in debug_log.getvalue()
    assert tg.token.split(":")[1] not in debug_log.getvalue()
    assert all("/bot[REDACTED]" in json.dumps(line) for line in shown)
