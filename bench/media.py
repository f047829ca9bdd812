"""Media benchmark: what voice, photos and PDFs add before the model is called, and the memory a burst
of photos costs (issue 13).

  (a) the media path before the model call (`Media.prepare`: download through the Bot API, transcription
      call, image re-encoding or PDF text extraction), in this process against the local fakes, for a
      30 s voice note, a 12 MP photo (as Telegram delivers a photo: its sizes, and as a file: the original
      JPEG) and a 50-page PDF. "Our CPU" is the process's CPU time minus the fake servers' threads',
      so it holds however busy the machine is; "wall" is what a user waits.
  (b) `python main.py` as a subprocess: its resident memory while 20 chats send a 12 MP photo at once
      (as photos, then as files), above its idle memory (after one text turn).

Targets: under 150 ms of our own time per photo and per ten PDF pages; RSS peak under 100 MB above idle.

    .venv/bin/python bench/media.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import BotProcess, format_table, median  # noqa: E402
from tests.fakes import media  # noqa: E402
from tests.fakes._telegram_media_updates import _renditions  # noqa: E402
from tests.fakes.llm_server import FakeLLMServer  # noqa: E402
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402

TOKEN = "123456:TEST-bench-token-abcdefghijklmnopqrstuvwxyz"
EXTRA_ENV: dict[str, str] = {}
PDF_PAGE = ("The quarterly figures show steady growth across every region we serve. " * 4 + "\n") * 12


def _width(size: dict[str, int]) -> int:
    return size["width"]


def _thread_cpu(threads: list[threading.Thread]) -> float:
    """CPU seconds the given threads have used so far."""
    total = 0.0
    for thread in threads:
        if thread.ident is not None and thread.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def _cases(tg: FakeTelegramServer) -> list[tuple[str, Callable[[], Any], float]]:
    """The files of (a); each call of a maker registers a new file_id, so nothing comes from a cache."""
    from llm.records import Attachment

    photo = media.jpeg(4000, 3000)
    pdf = media.pdf_with_text([PDF_PAGE] * 50)

    def telegram_photo() -> Attachment:
        sizes = tg.photo_sizes(photo)  # Telegram's sizes of the photo (made once, registered anew)
        chosen = max((size for size in sizes if max(size["width"], size["height"]) <= 1568), key=_width)
        return Attachment("photo", chosen["file_id"], "image/jpeg", chosen["file_size"])

    def attachment(kind: Any, data: bytes, mime: str, name: str = "") -> Attachment:
        ref = tg.add_file(data, mime, kind=kind, file_name=name or None)
        return Attachment(kind, ref.file_id, mime, ref.file_size, name)

    return [
        ("voice note, 30 s", lambda: attachment("voice", media.voice_note(30), "audio/ogg"), 1),
        ("photo, 12 MP (Telegram's 1280 px size)", telegram_photo, 1),
        ("photo, 12 MP sent as a file", lambda: attachment("document", photo, "image/jpeg", "photo.jpg"), 1),
        ("PDF, 50 pages", lambda: attachment("document", pdf, "application/pdf", "report.pdf"), 5),
    ]


async def _time(reader: Any, make: Callable[[], Any], runs: int, fakes: list[threading.Thread]) -> tuple[float, float]:
    """Median wall and own-CPU milliseconds of `reader.prepare` over `runs` (after one warm-up run)."""
    from actors.protocol import ReplyTarget, UserMessage

    walls, cpus = [], []
    for run in range(runs + 1):
        message = UserMessage("1", "", ReplyTarget(1), run, 1, attachments=(make(),))
        cpu_before = time.process_time() - _thread_cpu(fakes)
        started = time.perf_counter()
        prepared = await reader.prepare(message)
        wall = (time.perf_counter() - started) * 1000
        cpu = (time.process_time() - _thread_cpu(fakes) - cpu_before) * 1000
        assert prepared.notice is None, prepared.notice
        if run:  # the first run imports Pillow / pypdf / the SDK: not steady state
            walls.append(wall)
            cpus.append(cpu)
    return median(walls), median(cpus)


async def measure_prepare(runs: int) -> list[list[str]]:
    """(a): median wall and own-CPU milliseconds of `Media.prepare` per kind of file."""
    from telegram import Bot

    from actors.media import Media
    from channels.telegram.client import file_base_url
    from channels.telegram.media import TelegramFiles
    from conf.settings import BackoffSettings, LogSettings, MediaSettings
    from llm.speech import SpeechClient
    from ops.backoff import Backoff
    from ops.logs import configure_logging

    configure_logging(LogSettings(level="WARNING"))
    backoff = Backoff(BackoffSettings())
    rows = []
    with FakeTelegramServer(TOKEN) as tg, FakeLLMServer() as llm:
        fakes = [thread for thread in threading.enumerate() if thread is not threading.main_thread()]
        async with Bot(tg.token, base_url=tg.base_url, base_file_url=file_base_url(tg.base_url)) as bot:
            files = TelegramFiles(bot, backoff)
            speech = SpeechClient(
                base_url=llm.openai_base_url,
                api_key="k",
                transcription_model="whisper-1",
                tts_model="gpt-4o-mini-tts",
                tts_voice="alloy",
                backoff=backoff,
            )
            reader = Media(files, MediaSettings(), speech=speech)
            for name, make, per in _cases(tg):
                wall, cpu = await _time(reader, make, runs, fakes)
                unit = " per 10 pages" if per > 1 else ""
                rows.append([name, f"{wall:.0f}", f"{cpu:.0f}", f"{cpu / per:.0f}{unit}"])
            await reader.aclose()
            await speech.aclose()
            await files.aclose()
    return rows


def measure_rss(quick: bool) -> list[list[str]]:
    """(b): the bot's RSS peak above idle while 20 chats send a 12 MP photo at once."""
    chats = 10 if quick else 20
    photos = [media.jpeg(4000, 3000, seed=index) for index in range(chats)]
    for photo in photos:
        _renditions(photo)  # the fake Bot API's photo sizes, made before the clock starts
    rows = []
    with tempfile.TemporaryDirectory() as workdir, FakeTelegramServer(TOKEN) as tg, FakeLLMServer() as llm:
        llm.latency = 0.5  # every chat's model call is in flight together
        mcp = Path(workdir) / "mcp.yml"
        mcp.write_text("servers: {}\n")
        env = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": tg.base_url,
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": llm.openai_base_url,
            "LLM_API_KEY": "test",
            "TELEGRAM_ALLOWED_USER_IDS": "*",
            "STORE_DIR": str(Path(workdir) / "store"),
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "MCP_CONFIG": str(mcp),
            "PTB_TIMEDELTA": "1",
            **EXTRA_ENV,
        }
        with BotProcess("assistant", ["main.py"], env, Path(workdir) / "bot.log") as bot:
            tg.wait_for_call("getUpdates", timeout=60)
            tg.add_text_message(1_000, "hello")
            tg.wait_for_sent(chat_id=1_000, timeout=30)
            time.sleep(1.0)
            idle = bot.rss_mb()
            sent = len(tg.sent)
            for label, send in (
                ("as photos (Telegram's sizes)", lambda chat, data: tg.add_photo(chat, "what is this?", data)),
                ("as files (12 MP originals)", lambda chat, data: tg.add_document(chat, "p.jpg", data, "image/jpeg")),
            ):
                peak = idle
                started = time.monotonic()
                for chat, data in enumerate(photos, start=1):
                    send(chat, data)
                while len(tg.sent) < sent + chats:
                    bot.check_alive()
                    peak = max(peak, bot.rss_mb())
                    time.sleep(0.005)
                    if time.monotonic() - started > 300:
                        raise TimeoutError("the photos were not all answered")
                took = time.monotonic() - started
                sent = len(tg.sent)
                rows.append(
                    [f"{chats} chats, 12 MP {label}", f"{idle:.0f}", f"{peak:.0f}", f"{peak - idle:.0f}", f"{took:.1f}"]
                )
                time.sleep(1.0)
    return rows


def main() -> None:
    """Run both parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs and chats")
    parser.add_argument("--rss-only", action="store_true", help="only part (b)")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    if args.rss_only:
        print(format_table(["burst", "idle", "peak", "peak above idle", "all answered (s)"], measure_rss(args.quick)))
        return
    rows = asyncio.run(measure_prepare(runs))
    print(f"(a) media path before the model call, median of {runs} runs (ms)\n")
    print(format_table(["file", "wall", "our CPU", "our CPU per photo / per 10 PDF pages"], rows))
    print("\n(b) python main.py: resident memory while chats send 12 MP photos at once (MB)\n")
    print(format_table(["burst", "idle", "peak", "peak above idle", "all answered (s)"], measure_rss(args.quick)))


if __name__ == "__main__":
    main()
