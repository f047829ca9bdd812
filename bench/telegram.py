"""End-to-end Telegram benchmark: bots as subprocesses against the fake Bot API and fake LLM.

Measures issue 5's figures for each bot named in `--bots` (echo: a bare python-telegram-bot echo
bot; naive: the 60-line PTB + OpenAI bot; assistant: `python main.py`):

  (a) 300 chats, one message each, model latency 1 s: wall time until every reply arrived
  (b) 2,000 messages over 200 chats, model latency 0: messages/s, and the ratio to the echo bot
  (c) reply latency p50/p99 in one chat, model latency 0 (one message at a time)
  (d) seconds from process start to the first getUpdates, and RSS then
  (e) RSS after 3,000 chats (one message each), and after their actors were evicted

The naive bot handles one update at a time, so (a) would take ~300 s: it is measured on its first
messages and extrapolated (marked "~"). Its (b) is likewise cut at a time budget.

    .venv/bin/python bench/telegram.py [--quick] [--bots echo,naive,assistant]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file (telegram.py) would
# shadow python-telegram-bot's `telegram` package: put the repository root there instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import BotProcess, format_table, median, percentile  # noqa: E402
from tests.fakes.llm_server import FakeLLMServer  # noqa: E402
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402

TOKEN = "123456:TEST-bench-token"
OUT = Path(__file__).resolve().parent / "out"
COMMANDS = {
    "echo": ["bench/baselines/echo_bot.py"],
    "naive": ["bench/baselines/naive_bot.py"],
    "assistant": ["main.py"],
}


@dataclass(frozen=True)
class Sizes:
    """How much each scenario sends."""

    a_chats: int = 300
    a_naive_sample: int = 12
    b_messages: int = 2000
    b_chats: int = 200
    b_budget_s: float = 60.0
    c_rounds: int = 200
    e_chats: int = 3000
    e_idle_s: float = 3.0


QUICK = Sizes(a_naive_sample=4, b_messages=400, b_chats=40, b_budget_s=20.0, c_rounds=40, e_chats=500, e_idle_s=2.0)


@dataclass
class Figures:
    """What one bot measured; None where not measured."""

    a_wall_s: float | None = None
    a_extrapolated: bool = False
    b_rate: float | None = None
    b_partial: bool = False
    c_p50_ms: float | None = None
    c_p99_ms: float | None = None
    d_start_s: list[float] = field(default_factory=list)
    d_rss_mb: list[float] = field(default_factory=list)
    e_rss_mb: float | None = None
    e_evicted_mb: float | None = None
    wrong_replies: int = 0


@contextlib.contextmanager
def running(
    bot: str, workdir: Path, figures: Figures, llm_latency: float, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[FakeTelegramServer, BotProcess]]:
    """Fresh fakes and a fresh bot process, ready (it has polled once)."""
    with FakeTelegramServer(TOKEN) as tg, FakeLLMServer() as llm:
        llm.latency = llm_latency
        mcp = workdir / "mcp.yml"
        mcp.write_text("servers: {}\n")
        store = Path(tempfile.mkdtemp(prefix="store-", dir=workdir))
        env = {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": tg.base_url,
            "LLM_PROVIDER": "openai",
            "LLM_BASE_URL": llm.openai_base_url,
            "LLM_API_KEY": "test",
            "LLM_MODEL": "fake-model",
            "TELEGRAM_ALLOWED_USER_IDS": "*",
            "STORE_DIR": str(store),
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "MCP_CONFIG": str(mcp),
            "PTB_TIMEDELTA": "1",
            **(extra_env or {}),
        }
        with BotProcess(bot, COMMANDS[bot], env, workdir / f"{bot}-{time.monotonic_ns()}.log") as process:
            deadline = time.monotonic() + 60
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
            figures.d_rss_mb.append(process.rss_mb())
            figures.d_start_s.append(first - process.started_at)
            yield tg, process


def send_and_wait(
    tg: FakeTelegramServer, messages: list[tuple[int, str]], want: int, budget_s: float
) -> tuple[int, float]:
    """Queue the messages at once; wait for `want` replies or the budget. Return (replies, seconds)."""
    base = len(tg.sent)  # replies sent before (a warm-up) do not count
    start = time.monotonic()
    for chat_id, text in messages:
        tg.add_text_message(chat_id, text)
    with contextlib.suppress(TimeoutError):
        tg.wait_for_sent(count=base + want, timeout=budget_s)
    sent = tg.sent[base : base + want]
    return len(sent), (sent[-1].time - start) if sent else budget_s


def count_wrong(tg: FakeTelegramServer, expected: Callable[[str], bool]) -> int:
    """Replies whose text is not what the bot should have answered."""
    return sum(1 for message in tg.sent if not expected(message.visible_text))


def scenario_a(bot: str, sizes: Sizes, workdir: Path, figures: Figures) -> None:
    """(a) many chats at once, a slow model."""
    with running(bot, workdir, figures, llm_latency=1.0) as (tg, _):
        # One warm-up exchange first, for every bot alike: this scenario measures chats in
        # parallel, not the first request's connection set-up and lazy imports.
        tg.add_text_message(9_999, "warm up")
        tg.wait_for_sent(chat_id=9_999, timeout=60)
        messages = [(10_000 + i, f"hello {i}") for i in range(sizes.a_chats)]
        if bot == "naive":
            got, seconds = send_and_wait(tg, messages, sizes.a_naive_sample, 60 + 2 * sizes.a_naive_sample)
            figures.a_wall_s = seconds / max(1, got) * sizes.a_chats
            figures.a_extrapolated = True
        else:
            got, seconds = send_and_wait(tg, messages, sizes.a_chats, 120)
            figures.a_wall_s = seconds if got == sizes.a_chats else None


def scenario_b(bot: str, sizes: Sizes, workdir: Path, figures: Figures) -> None:
    """(b) throughput with an instant model."""
    with running(bot, workdir, figures, llm_latency=0.0) as (tg, _):
        messages = [(20_000 + i % sizes.b_chats, f"message {i}") for i in range(sizes.b_messages)]
        got, seconds = send_and_wait(tg, messages, sizes.b_messages, sizes.b_budget_s)
        figures.b_rate = got / seconds
        figures.b_partial = got < sizes.b_messages
        figures.wrong_replies += count_wrong(tg, lambda text: "message " in text)


def scenario_c(bot: str, sizes: Sizes, workdir: Path, figures: Figures) -> None:
    """(c) reply latency in one chat, one message at a time."""
    with running(bot, workdir, figures, llm_latency=0.0) as (tg, _):
        latencies: list[float] = []
        warmup = 5
        for i in range(sizes.c_rounds + warmup):
            start = time.monotonic()
            tg.add_text_message(777, f"ping {i}")
            reply = tg.wait_for_sent(chat_id=777, count=i + 1, timeout=30)[-1]
            if i >= warmup:
                latencies.append((reply.time - start) * 1000)
        figures.c_p50_ms = median(latencies)
        figures.c_p99_ms = percentile(latencies, 0.99)


def scenario_e(bot: str, sizes: Sizes, workdir: Path, figures: Figures) -> None:
    """(e) memory after many chats, and after idle actors are evicted."""
    env = {"ACTOR_IDLE_SECONDS": str(sizes.e_idle_s)}
    with running(bot, workdir, figures, llm_latency=0.0, extra_env=env) as (tg, process):
        messages = [(30_000 + i, f"hi {i}") for i in range(sizes.e_chats)]
        got, _ = send_and_wait(tg, messages, sizes.e_chats, 300)
        if got < sizes.e_chats:
            raise RuntimeError(f"{bot}: only {got} of {sizes.e_chats} replies")
        figures.e_rss_mb = process.rss_mb()
        if bot == "assistant":
            time.sleep(sizes.e_idle_s * 2 + 2)  # the registry evicts idle actors after ACTOR_IDLE_SECONDS
            figures.e_evicted_mb = process.rss_mb()


SCENARIOS = (scenario_a, scenario_b, scenario_c, scenario_e)


def _fmt(value: float | None, digits: int = 2, approx: bool = False) -> str:
    if value is None:
        return "n/a"
    return ("~" if approx else "") + f"{value:.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "n/a"
    return f"{value / base:.2f}"


def report(results: dict[str, Figures], sizes: Sizes) -> str:
    """The table of figures, with each bot's ratio to the echo bot."""
    bots = list(results)
    echo = results.get("echo")
    rows: list[list[str]] = []

    def row(label: str, target: str, get: Callable[[Figures], float | None], digits: int = 2, approx: str = "") -> None:
        cells = [label, target]
        for bot in bots:
            cells.append(_fmt(get(results[bot]), digits, bool(approx) and getattr(results[bot], approx)))
        for bot in bots:
            if bot != "echo":
                cells.append(_ratio(get(results[bot]), get(echo) if echo else None))
        rows.append(cells)

    row(f"(a) wall s, {sizes.a_chats} chats, model 1 s", "<= 1.2", lambda f: f.a_wall_s, approx="a_extrapolated")
    row(
        f"(b) msg/s, {sizes.b_messages} msgs / {sizes.b_chats} chats",
        ">= 0.5x echo",
        lambda f: f.b_rate,
        1,
        approx="b_partial",
    )
    row("(c) reply latency p50 ms", "<= 10", lambda f: f.c_p50_ms, 1)
    row("(c) reply latency p99 ms", "<= 25", lambda f: f.c_p99_ms, 1)
    row("(d) start to first getUpdates s (median)", "<= 0.8", lambda f: median(f.d_start_s) if f.d_start_s else None)
    row("(d) RSS at first getUpdates MB (median)", "<= 80", lambda f: median(f.d_rss_mb) if f.d_rss_mb else None, 1)
    row(f"(e) RSS after {sizes.e_chats} chats MB", "<= 100", lambda f: f.e_rss_mb, 1)
    row("(e) RSS after eviction MB", "", lambda f: f.e_evicted_mb, 1)
    headers = ["figure", "target", *bots, *[f"{bot}/echo" for bot in bots if bot != "echo"]]
    return format_table(headers, rows)


def plot(results: dict[str, Figures], sizes: Sizes, path: Path) -> None:
    """Bars per figure, one per bot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Callable[[Figures], float | None], bool]] = [
        (f"(a) wall time, {sizes.a_chats} chats, model 1 s [s]", lambda f: f.a_wall_s, True),
        (f"(b) throughput, {sizes.b_messages} msgs [msg/s]", lambda f: f.b_rate, False),
        ("(c) reply latency p50 [ms]", lambda f: f.c_p50_ms, False),
        ("(c) reply latency p99 [ms]", lambda f: f.c_p99_ms, False),
        ("(d) start to first poll [s]", lambda f: median(f.d_start_s) if f.d_start_s else None, False),
        (f"(e) RSS after {sizes.e_chats} chats [MB]", lambda f: f.e_rss_mb, False),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    colours = {"echo": "#999999", "naive": "#d9822b", "assistant": "#2b7bd9"}
    for axis, (title, get, log_scale) in zip(axes.flat, panels, strict=True):
        names = [bot for bot in results if get(results[bot]) is not None]
        values = [float(get(results[bot]) or 0) for bot in names]
        bars = axis.bar(names, values, color=[colours.get(name, "#555555") for name in names])
        axis.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
        axis.set_title(title, fontsize=9)
        if log_scale and values and min(values) > 0:
            axis.set_yscale("log")
    figure.suptitle("Telegram end to end, fake Bot API + fake LLM (~ marks extrapolated naive figures in the table)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> int:
    """Run the scenarios for each bot, print the table, write the plot."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a short run")
    parser.add_argument("--bots", default="echo,naive,assistant", help="comma-separated: echo,naive,assistant")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    bots = [name.strip() for name in args.bots.split(",") if name.strip()]
    unknown = set(bots) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown bots: {', '.join(sorted(unknown))}")
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="bench-telegram-") as tmp:
        for bot in bots:
            figures = results[bot] = Figures()
            for scenario in SCENARIOS:
                began = time.monotonic()
                try:
                    scenario(bot, sizes, Path(tmp), figures)
                except (RuntimeError, TimeoutError) as exc:
                    print(f"{bot} {scenario.__name__} failed: {exc}", file=sys.stderr)
                print(f"  {bot:9} {scenario.__name__} done in {time.monotonic() - began:.1f} s", file=sys.stderr)
            if figures.wrong_replies:
                print(f"  {bot}: {figures.wrong_replies} replies were not the expected answer", file=sys.stderr)
    print(report(results, sizes))
    print("~ = extrapolated from the naive bot's first messages / cut at the time budget")
    plot(results, sizes, OUT / "telegram.png")
    print(f"plot: {OUT / 'telegram.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
