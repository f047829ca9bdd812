"""Streamed answers end to end: `python main.py` against the fake Bot API and a paced fake model.

The fake model takes 1 s to its first token and then writes 300 characters/s; answers are 300,
1,500 and 6,000 characters, to one private chat and to 100 at once (and to one group). For each:
the time from the user's message to the first text they can see (a draft, a group's first
message, or the answer itself when nothing is streamed), median and p99, and the same counted
from the model's first token; the time from the model's last token to the finished answer; drafts
or edits per answer; and the assistant's CPU per turn, streamed against whole answers.

Modes: `streamed` (the shipped configuration), `whole` (STREAM_REPLIES=off and a model that does
not stream: the configuration before streaming), `whole+sse` (STREAM_REPLIES=off, the model
streams: what streaming the model costs without previews).

    .venv/bin/python bench/streaming.py [--quick]

Targets: first visible text within 0.3 s of the model's first token (median, 100 chats); the
finished answer within 0.3 s of the model's last token; streaming adds at most 30% CPU per turn.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where bench/telegram.py would
# shadow python-telegram-bot's `telegram` package: put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import REPO, BotProcess, format_table, median, percentile  # noqa: E402
from bench._streaming_model import CHARS_PER_SECOND, FIRST_TOKEN_S, answer_text  # noqa: E402
from channels.telegram.format import split_message, to_telegram_html  # noqa: E402
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402

TOKEN = "123456:TEST-bench-token"
OUT = Path(__file__).resolve().parent / "out"
MODES = ("streamed", "whole", "whole+sse")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Case:
    """One batch: `chats` chats at once, each asking for an answer of `size` characters."""

    size: int
    chats: int
    group: bool = False

    @property
    def label(self) -> str:
        where = "group" if self.group else ("chat" if self.chats == 1 else "chats")
        return f"{self.size:,} chars, {self.chats} {where}"


CASES = (
    Case(300, 1),
    Case(1500, 1),
    Case(6000, 1),
    Case(300, 100),
    Case(1500, 100),
    Case(6000, 100),
    Case(1500, 1, group=True),
)
QUICK = (Case(300, 1), Case(1500, 1), Case(1500, 20), Case(1500, 1, group=True))


@dataclass
class Answer:
    """What one chat saw of one answer, and when the model wrote it (monotonic seconds)."""

    asked: float
    model_first: float = 0.0
    model_last: float = 0.0
    first_visible: float = 0.0
    finished: float = 0.0
    previews: int = 0


@dataclass
class Batch:
    """One case in one mode."""

    answers: list[Answer] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    waited_s: float = 0.0
    """Seconds the assistant's event loop was ready to run but waited for a CPU (another process had it)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def runqueue_seconds(pid: int) -> float:
    """Seconds the process's main thread (the event loop) has waited for a CPU while runnable."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


@contextlib.contextmanager
def fake_model() -> Iterator[tuple[str, dict[str, tuple[float, float]]]]:
    """The paced fake model in a subprocess: its base URL, and user text -> when the first and last
    text of its answer went out."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "_streaming_model.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    base_url = process.stdout.readline().strip()
    requests: dict[str, tuple[float, float]] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            kind, first, last, text = line.rstrip("\n").split(" ", 3)
            if kind == "ANSWERED":
                requests[text] = (float(first), float(last))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield base_url, requests
    finally:
        process.stdin.close()
        process.wait(10)


def assistant_env(mode: str, tg: FakeTelegramServer, base_url: str, workdir: Path) -> dict[str, str]:
    mcp = workdir / "mcp.yml"
    mcp.write_text("servers: {}\n")
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": tg.base_url,
        "TELEGRAM_ALLOWED_USER_IDS": "*",
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": base_url,
        "LLM_API_KEY": "test",
        "LLM_MODEL": "fake-model",
        "STORE_DIR": tempfile.mkdtemp(prefix=f"store-{mode}-", dir=workdir),
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "MCP_CONFIG": str(mcp),
        "PTB_TIMEDELTA": "1",
        "STREAM_REPLIES": "on" if mode == "streamed" else "off",
    }
    if mode == "whole":
        config = workdir / "config-whole.yml"
        shipped = (REPO / "conf" / "config.yml").read_text()
        config.write_text(shipped.replace("  stream: true ", "  stream: false "))
        env["ASSISTANT_CONFIG"] = str(config)
    return env


def run_case(
    tg: FakeTelegramServer, requests: dict[str, tuple[float, float]], pid: int, case: Case, first_chat: int
) -> Batch:
    """Ask `case.chats` chats at once and wait until each shows its finished answer."""
    text = answer_text(case.size)
    final = split_message(to_telegram_html(text))
    chats = [-(first_chat + index) if case.group else first_chat + index for index in range(case.chats)]
    mention = "@test_assistant_bot " if case.group else ""
    batch = Batch()
    base = len(tg.sent)
    cpu_before, waited_before, began = cpu_seconds(pid), runqueue_seconds(pid), time.monotonic()
    asked = {}
    for chat in chats:
        asked[chat] = time.monotonic()
        tg.add_text_message(chat, f"{mention}bench {case.size} {chat}", chat_type="supergroup" if case.group else None)

    def finished() -> bool:
        # Evaluated under the fake server's lock at each message it takes: it must stay cheap.
        if case.group:
            return all(tg.chat_view(chat) == final for chat in chats)
        return len(tg._state.sent) >= base + len(chats) * len(final)

    with tg._sent_cond:
        done = tg._sent_cond.wait_for(finished, 120)
    batch.cpu_s = cpu_seconds(pid) - cpu_before
    batch.waited_s = runqueue_seconds(pid) - waited_before
    batch.wall_s = time.monotonic() - began
    if not done:
        raise RuntimeError(f"{case.label}: not every chat got its answer")
    for chat in chats:
        first, last = requests[f"bench {case.size} {chat}"]  # the model never sees the mention
        answer = Answer(asked[chat], model_first=first, model_last=last)
        sent, edits, drafts = tg.sent_to(chat), tg.edits_to(chat), tg.drafts(chat)
        shown = [m.time for m in sent] + [d.time for d in drafts]
        answer.first_visible = min(shown)
        answer.finished = max([m.time for m in sent] + [m.time for m in edits])
        answer.previews = len(drafts) + len(edits) + max(0, len(sent) - len(final))
        batch.answers.append(answer)
    return batch


@dataclass
class Assistant:
    """One assistant process in one mode, with fakes of its own."""

    mode: str
    tg: FakeTelegramServer
    requests: dict[str, tuple[float, float]]
    process: BotProcess
    first_chat: int = 10_000


@contextlib.contextmanager
def assistant(mode: str, workdir: Path) -> Iterator[Assistant]:
    """An assistant process in `mode`, warmed up (its model SDK loads on the first turn)."""
    with FakeTelegramServer(TOKEN) as tg, fake_model() as (base_url, requests):
        env = assistant_env(mode, tg, base_url, workdir)
        with BotProcess("assistant", ["main.py"], env, workdir / f"assistant-{mode}.log") as process:
            tg.wait_for_call("getUpdates", timeout=60)
            tg.add_text_message(1, "warm up")
            tg.wait_for_sent(chat_id=1, timeout=60)
            yield Assistant(mode, tg, requests, process)


def run_all(cases: tuple[Case, ...], workdir: Path) -> dict[str, dict[Case, Batch]]:
    """Every case in every mode: the modes take turns case by case (one process each, all started
    first), so that a machine whose load changes meanwhile weighs on every mode alike."""
    results: dict[str, dict[Case, Batch]] = {mode: {} for mode in MODES}
    with contextlib.ExitStack() as stack:
        assistants = [stack.enter_context(assistant(mode, workdir)) for mode in MODES]
        for case in cases:
            for one in assistants:
                began = time.monotonic()
                results[one.mode][case] = run_case(one.tg, one.requests, one.process.pid, case, one.first_chat)
                one.first_chat += case.chats
                print(f"  {one.mode:9} {case.label:26} {time.monotonic() - began:5.1f} s", file=sys.stderr)
                one.process.check_alive()
    return results


def report(results: dict[str, dict[Case, Batch]], cases: tuple[Case, ...]) -> str:
    """The table: one row per case and mode."""
    rows: list[list[str]] = []
    for case in cases:
        whole_cpu = None
        for mode in MODES:
            batch = results.get(mode, {}).get(case)
            if batch is None:
                continue
            answers = batch.answers
            visible = [a.first_visible - a.asked for a in answers]
            after_first = [a.first_visible - a.model_first for a in answers]
            after_last = [a.finished - a.model_last for a in answers]
            cpu_ms = batch.cpu_s / len(answers) * 1000
            whole_cpu = cpu_ms if mode == "whole" else whole_cpu
            rows.append(
                [
                    case.label,
                    mode,
                    f"{median(visible):.2f} / {percentile(visible, 0.99):.2f}",
                    f"{median(after_first):+.2f} / {percentile(after_first, 0.99):+.2f}",
                    f"{median(after_last):+.2f} / {percentile(after_last, 0.99):+.2f}",
                    f"{sum(a.previews for a in answers) / len(answers):.1f}",
                    f"{cpu_ms:.0f}",
                    f"{cpu_ms / whole_cpu:.2f}" if whole_cpu else "",
                    f"{batch.waited_s / batch.wall_s:.0%}",
                ]
            )
    headers = [
        "answers",
        "mode",
        "first text s (p50 / p99)",
        "- model's 1st token",
        "done - model's last token",
        "previews/answer",
        "CPU ms/turn",
        "CPU / whole",
        "waited for CPU",
    ]
    return format_table(headers, rows)


def plot(results: dict[str, dict[Case, Batch]], cases: tuple[Case, ...], path: Path) -> None:
    """Time to the first visible text and to the finished answer, per case, streamed against whole."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    labels = [case.label for case in cases]
    width = 0.8 / len(MODES)
    colours = {"streamed": "#2b7bd9", "whole": "#999999", "whole+sse": "#d9822b"}
    for index, mode in enumerate(MODES):
        batches = [results.get(mode, {}).get(case) for case in cases]
        first = [median([a.first_visible - a.asked for a in b.answers]) if b else 0 for b in batches]
        done = [median([a.finished - a.asked for a in b.answers]) if b else 0 for b in batches]
        positions = [i + (index - 1) * width for i in range(len(cases))]
        axes[0].bar(positions, first, width, label=mode, color=colours[mode])
        axes[1].bar(positions, done, width, label=mode, color=colours[mode])
    for axis, title in zip(axes, ("first visible text [s] (median)", "finished answer [s] (median)"), strict=True):
        axis.set_title(title, fontsize=10)
        axis.set_xticks(range(len(cases)), labels, rotation=30, ha="right", fontsize=8)
        axis.legend(fontsize=8)
    pace = f"first token after {FIRST_TOKEN_S:g} s, then {CHARS_PER_SECOND:g} chars/s"
    figure.suptitle(f"Streamed answers from a fake model: {pace}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> int:
    """Run every case in every mode, print the table, draw the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer and smaller cases, for a short run")
    args = parser.parse_args()
    cases = QUICK if args.quick else CASES
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        results = run_all(cases, Path(tmp))
    print(report(results, cases))
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}, on {os.cpu_count()} CPUs")
    print("first text: from the user's message; - model's 1st token / done - model's last token: the same")
    print("moments counted from the model's; previews: drafts, edits, extra messages; waited for CPU: share of")
    print("the batch's wall time the assistant's event loop was runnable but another process had the CPU")
    plot(results, cases, OUT / "streaming.png")
    print(f"plot: {OUT / 'streaming.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
