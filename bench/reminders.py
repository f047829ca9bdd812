"""Reminder benchmark (issue 15): `python main.py` (file store) against the fake Bot API.

  (a) lateness: 10,000 reminders over 1,000 chats, due at random times within one minute (starting
      after the bot is up): how late each reached the fake Bot API (median, p99, max), and that each
      arrived exactly once; and the bot's CPU per reminder. Targets: p99 under 1 s (the contract's
      promise is 2 s). The bot sends with the shipped `send_connections` (4) unless
      `--send-connections` says otherwise. (Telegram itself takes ~30 messages/s from one bot: 10,000
      in a minute is a test of the scheduler and the actors, not of what Telegram would deliver.)
  (b) idle: 100,000 reminders due in a month or more, over 10,000 chats: the bot's CPU while idle
      (% of one core, over `--idle-seconds`), its RSS beside the same bot without reminders, and its
      start-up time. Targets: under 0.1% of a core, under 50 MB for the 100,000.

The reminders are written into the store's file as the store writes them (making 100,000 through
its API would fsync 100,000 times before the benchmark could begin).

    .venv/bin/python bench/reminders.py [--quick] [--idle-seconds 60] [--send-connections 4]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import REPO, BotProcess, format_table, median, percentile  # noqa: E402
from stores._reminder_json import reminder_to_json  # noqa: E402
from stores.reminders import NewReminder, ReplyTarget, build_reminder  # noqa: E402
from tests.fakes.llm_server import FakeLLMServer  # noqa: E402
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402

TOKEN = "123456:TEST-bench-token"
TEXTS = ("call the bank", "water the plants", "take the pills", "stand-up meeting in 5 minutes", "pick up Anna")


@dataclass(frozen=True)
class Sizes:
    """How much each scenario makes."""

    due_reminders: int = 10_000
    due_chats: int = 1_000
    due_window_s: float = 60.0
    future_reminders: int = 100_000
    future_chats: int = 10_000


QUICK = Sizes(due_reminders=2_000, due_chats=200, due_window_s=20.0, future_reminders=20_000, future_chats=2_000)


def seed(store_dir: Path, reminders: list[NewReminder]) -> None:
    """Write `reminders` into the file store's reminder log, as the store writes them."""
    directory = store_dir / "_reminders"
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    taken: set[str] = set()
    with (directory / "reminders.jsonl").open("w", encoding="utf-8") as log:
        for new in reminders:
            reminder = build_reminder(new, taken, now)
            taken.add(reminder.id)
            log.write(json.dumps({"op": "put", "reminder": reminder_to_json(reminder)}) + "\n")


def env_for(
    tg: FakeTelegramServer, llm: FakeLLMServer, workdir: Path, store_dir: Path, send_connections: int = 4
) -> dict[str, str]:
    mcp = workdir / "mcp.yml"
    mcp.write_text("servers: {}\n")
    shipped = (REPO / "conf" / "config.yml").read_text()
    config = workdir / "config.yml"
    config.write_text(shipped.replace("send_connections: 4 ", f"send_connections: {send_connections} "))
    return {
        "ASSISTANT_CONFIG": str(config),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": tg.base_url,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm.openai_base_url,
        "LLM_API_KEY": "test",
        "TELEGRAM_ALLOWED_USER_IDS": "*",
        "STORE_DIR": str(store_dir),
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "MCP_CONFIG": str(mcp),
    }


def wait_until_polling(tg: FakeTelegramServer, process: BotProcess, timeout: float = 120) -> float:
    """Seconds from the process's start to its first getUpdates."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tg.wait_for_call("getUpdates", timeout=0.2)
            break
        except TimeoutError:
            process.check_alive()
            if time.monotonic() > deadline:
                raise
    first = tg.first_call_time("getUpdates")
    assert first is not None
    return first - process.started_at


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (/proc/<pid>/stat), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lateness(sizes: Sizes, workdir: Path, send_connections: int) -> dict[str, float]:
    """(a): how late each of the due reminders arrived, in ms."""
    store_dir = Path(tempfile.mkdtemp(prefix="store-", dir=workdir))
    start = datetime.now(UTC) + timedelta(seconds=25)  # the bot is up well before the first
    rng = random.Random(15)
    reminders = []
    for index in range(sizes.due_reminders):
        chat = 10_000 + index % sizes.due_chats
        due = start + timedelta(seconds=rng.uniform(0, sizes.due_window_s))
        reminders.append(NewReminder(str(chat), ReplyTarget(chat), chat, f"#{index} {TEXTS[index % 5]}", due, "UTC"))
    seed(store_dir, reminders)
    due_of = {reminder.text: reminder.due for reminder in reminders}
    with FakeTelegramServer(TOKEN) as tg, FakeLLMServer() as llm:
        env = env_for(tg, llm, workdir, store_dir, send_connections)
        with BotProcess("assistant", ["main.py"], env, workdir / "lateness.log") as process:
            wait_until_polling(tg, process)
            last_due = max(due_of.values())
            wait_s = (last_due - datetime.now(UTC)).total_seconds() + 300
            cpu_before = cpu_seconds(process.pid)
            sent = tg.wait_for_sent(count=sizes.due_reminders, timeout=wait_s)
            cpu_ms = (cpu_seconds(process.pid) - cpu_before) * 1000 / sizes.due_reminders
            offset = time.time() - time.monotonic()  # the fake's times are monotonic; due times are wall
    late_ms = []
    arrived: dict[str, int] = {}
    for message in sent:
        arrived[message.text] = arrived.get(message.text, 0) + 1
        due = due_of[message.text].timestamp()
        late_ms.append((message.time + offset - due) * 1000)
    assert len(arrived) == sizes.due_reminders, "every reminder arrived"
    assert set(arrived.values()) == {1}, "each once"
    return {
        "cpu_ms": cpu_ms,
        "median": median(late_ms),
        "p99": percentile(late_ms, 0.99),
        "max": max(late_ms),
        "min": min(late_ms),
    }


def idle(sizes: Sizes, workdir: Path, idle_seconds: float, reminders: int) -> dict[str, float]:
    """(b): start-up, RSS and idle CPU of the bot holding `reminders` future reminders."""
    store_dir = Path(tempfile.mkdtemp(prefix="store-", dir=workdir))
    later = datetime.now(UTC) + timedelta(days=30)
    seed(
        store_dir,
        [
            NewReminder(
                str(20_000 + index % sizes.future_chats),
                ReplyTarget(20_000 + index % sizes.future_chats),
                20_000 + index % sizes.future_chats,
                TEXTS[index % 5],
                later + timedelta(minutes=index),
                "Europe/Berlin",
                "daily 09:00" if index % 4 == 0 else None,
            )
            for index in range(reminders)
        ],
    )
    with FakeTelegramServer(TOKEN) as tg, FakeLLMServer() as llm:
        env = env_for(tg, llm, workdir, store_dir)
        with BotProcess("assistant", ["main.py"], env, workdir / f"idle-{reminders}.log") as process:
            started_s = wait_until_polling(tg, process)
            time.sleep(5)  # the scheduler reads the store at start: let it finish
            before = cpu_seconds(process.pid)
            time.sleep(idle_seconds)
            cpu_percent = (cpu_seconds(process.pid) - before) / idle_seconds * 100
            rss = process.rss_mb()
    return {"start_s": started_s, "rss_mb": rss, "cpu_percent": cpu_percent}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long idle CPU is measured")
    parser.add_argument("--send-connections", type=int, default=4, help="the bot's connections for sending")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    idle_seconds = min(args.idle_seconds, 20.0) if args.quick else args.idle_seconds
    with tempfile.TemporaryDirectory(prefix="bench-reminders-") as tmp:
        workdir = Path(tmp)
        late = lateness(sizes, workdir, args.send_connections)
        empty = idle(sizes, workdir, idle_seconds, 0)
        full = idle(sizes, workdir, idle_seconds, sizes.future_reminders)
    print(
        f"(a) {sizes.due_reminders:,} reminders over {sizes.due_chats:,} chats due within {sizes.due_window_s:g} s "
        f"({args.send_connections} send connections)"
    )
    print(
        format_table(
            ["lateness", "median", "p99", "max"],
            [["ms after the due time", f"{late['median']:.0f}", f"{late['p99']:.0f}", f"{late['max']:.0f}"]],
        )
    )
    print(f"the bot's CPU: {late['cpu_ms']:.2f} ms per reminder (claim, record, send, confirm)")
    print(f"\n(b) idle for {idle_seconds:g} s")
    print(
        format_table(
            ["reminders", "start-up s", "RSS MB", "idle CPU % of a core"],
            [
                ["0", f"{empty['start_s']:.1f}", f"{empty['rss_mb']:.1f}", f"{empty['cpu_percent']:.3f}"],
                [
                    f"{sizes.future_reminders:,}",
                    f"{full['start_s']:.1f}",
                    f"{full['rss_mb']:.1f}",
                    f"{full['cpu_percent']:.3f}",
                ],
            ],
        )
    )
    held = full["rss_mb"] - empty["rss_mb"]
    each = held * 1e6 / sizes.future_reminders
    print(f"\n{sizes.future_reminders:,} reminders cost {held:.1f} MB ({each:.0f} B each)")
    ok = late["p99"] < 1000 and full["cpu_percent"] < 0.1 and held < 50 * sizes.future_reminders / 100_000
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
