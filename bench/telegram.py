"""End-to-end Telegram benchmark, measured as a user deploys: every bot is a process of its own,
started cold, against the fake Bot API and fake model server, each also a process of its own;
memory is the RSS of the bot's whole process tree (MCP servers included).

Bots (`--bots`): `echo`, a bare python-telegram-bot echo bot; `naive`, the 60-line PTB + OpenAI
bot; `naivec`, the same with PTB's `concurrent_updates`; `assistant`, `python main.py` on the
shipped configuration (conf/config.yml, conf/mcp.yml; only the endpoints, token and store
directory are set); `bare`, the same with an empty MCP servers file (the core alone).

  (a) 300 chats, one message each, model latency 1 s: wall time until every reply arrived
  (b) 2,000 messages over 200 chats, model latency 0: messages/s, and the bot's CPU per message
  (c) reply latency p50/p99 in one chat, model latency 0 (one message at a time)
  (d) seconds from process start to the first getUpdates, and the tree's RSS then
  (e) 3,000 chats, one message each: the tree's peak RSS, and its RSS once idle actors were evicted

The naive bot handles one update at a time, so its (a) would take ~300 s: it is measured on its
first messages and extrapolated (marked "~"); its (b) is likewise cut at a time budget. Ratios are
to the anchor of the issue's targets: (a) to `naivec`, (b), (c) and (d) to `echo`; only ratios from
one run mean anything on a shared machine.

Every bot runs on one interpreter, `--python` (default: bench/out/venv-runtime/bin/python, a
virtualenv with requirements.txt alone, made with `python -m venv` and pip on first use): a user's
deployment has only those packages, and the dev venv's extras (rich, pygments, ...) are imported by
structlog and python-telegram-bot when present, which would slow every start. Our packages are
byte-compiled with it first and the bots may write bytecode caches (PYTHONDONTWRITEBYTECODE is
dropped for them), as a user's `python main.py` does, so no start is measured compiling our code.
The fakes and the harness run on this interpreter (`.venv`: they need the test dependencies).

    .venv/bin/python bench/telegram.py [--quick] [--bots echo,naive,naivec,assistant,bare] [--python PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
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

from bench._fakes import Fakes  # noqa: E402
from bench._harness import (  # noqa: E402
    BotProcess,
    PeakSampler,
    compile_sources,
    median,
    percentile,
    runtime_python,
)
from bench._telegram_report import plot, report, write_csv  # noqa: E402

TOKEN = "123456:TEST-bench-token"
OUT = Path(__file__).resolve().parent / "out"
LOGS = OUT / "logs"
COMMANDS = {
    "echo": ["bench/baselines/echo_bot.py"],
    "naive": ["bench/baselines/naive_bot.py"],
    "naivec": ["bench/baselines/naive_bot.py"],
    "assistant": ["main.py"],
    "bare": ["main.py"],
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
    e_idle_s: float = 6.0
    """ACTOR_IDLE_SECONDS in (e): past the 5 s after which idle HTTP connections close, as the
    default 600 s is; the tree's RSS is read after two idle periods."""


QUICK = Sizes(a_naive_sample=4, b_messages=400, b_chats=40, b_budget_s=20.0, c_rounds=40, e_chats=500)


@dataclass
class Figures:
    """What one bot measured; None where not measured."""

    a_wall_s: float | None = None
    a_extrapolated: bool = False
    b_rate: float | None = None
    b_partial: bool = False
    b_cpu_ms: float | None = None
    c_p50_ms: float | None = None
    c_p99_ms: float | None = None
    d_start_s: list[float] = field(default_factory=list)
    d_rss_mb: list[float] = field(default_factory=list)
    e_start_mb: float | None = None
    e_peak_mb: float | None = None
    e_idle_mb: float | None = None
    wrong_replies: int = 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(bot: str, fakes: Fakes, workdir: Path) -> dict[str, str]:
    """What a user sets: the token and endpoints (and a store directory of the run's own)."""
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": fakes.tg.base_url(),
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": fakes.llm.openai_base_url(),
        "LLM_API_KEY": "test",
        "LLM_MODEL": "fake-model",
        "TELEGRAM_ALLOWED_USER_IDS": "*",
        "STORE_DIR": tempfile.mkdtemp(prefix="store-", dir=workdir),
        "HEALTH_PORT": str(_free_port()),
    }
    if bot == "bare":
        empty = workdir / "mcp-empty.yml"
        empty.write_text("servers: {}\n")
        env["MCP_CONFIG"] = str(empty)
    if bot == "naivec":
        env["NAIVE_CONCURRENT"] = "1"
    return env


@dataclass(frozen=True)
class Setup:
    """Where the bots run: a scratch directory, and the interpreter that runs each of them."""

    workdir: Path
    python: Path | str = sys.executable


@contextlib.contextmanager
def running(
    bot: str, setup: Setup | Path, figures: Figures, llm_latency: float, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Fakes, BotProcess]]:
    """Fresh fakes and a fresh bot process, ready (it has polled once). A bare directory for `setup`
    runs the bot on this interpreter."""
    setup = setup if isinstance(setup, Setup) else Setup(setup)
    with Fakes(TOKEN, llm_latency) as fakes:
        env = {**_environment(bot, fakes, setup.workdir), **(extra_env or {})}
        LOGS.mkdir(parents=True, exist_ok=True)
        log = LOGS / f"{bot}-{time.monotonic_ns()}.log"
        with BotProcess(bot, COMMANDS[bot], env, log, python=setup.python) as process:
            first = fakes.wait_for_first_poll(process.check_alive)
            figures.d_rss_mb.append(process.tree_rss_mb())
            figures.d_start_s.append(first - process.started_at)
            yield fakes, process


def send_and_wait(fakes: Fakes, messages: list[tuple[int, str]], want: int, budget_s: float) -> tuple[int, float]:
    """Queue the messages at once; wait for `want` replies or the budget. Return (replies, seconds)."""
    base = fakes.tg.sent_count()  # replies sent before (a warm-up) do not count
    start = time.monotonic()
    fakes.tg.add_text_messages(messages)
    with contextlib.suppress(TimeoutError):
        fakes.tg.wait_for_sent(base + want, budget_s)
    sent = fakes.tg.sent_since(base, want)
    return len(sent), (sent[-1][2] - start) if sent else budget_s


def scenario_a(bot: str, sizes: Sizes, setup: Setup, figures: Figures) -> None:
    """(a) many chats at once, a slow model."""
    with running(bot, setup, figures, llm_latency=1.0) as (fakes, _):
        # One warm-up exchange first, for every bot alike: this scenario measures chats in
        # parallel, not the first request's connection set-up and lazy imports.
        fakes.tg.add_text_messages([(9_999, "warm up")])
        fakes.tg.wait_for_sent(1, 60, 9_999)
        messages = [(10_000 + i, f"hello {i}") for i in range(sizes.a_chats)]
        if bot == "naive":
            got, seconds = send_and_wait(fakes, messages, sizes.a_naive_sample, 60 + 2 * sizes.a_naive_sample)
            figures.a_wall_s = seconds / max(1, got) * sizes.a_chats
            figures.a_extrapolated = True
        else:
            got, seconds = send_and_wait(fakes, messages, sizes.a_chats, 120)
            figures.a_wall_s = seconds if got == sizes.a_chats else None
            if got < sizes.a_chats:
                print(f"  {bot}: only {got} of {sizes.a_chats} replies in (a)", file=sys.stderr)


def scenario_b(bot: str, sizes: Sizes, setup: Setup, figures: Figures) -> None:
    """(b) throughput with an instant model, and the CPU the bot's tree spent per message."""
    with running(bot, setup, figures, llm_latency=0.0) as (fakes, process):
        # A warm-up exchange first, for every bot alike, as in (a): a throughput is a steady state,
        # not the first request's connection set-up and lazy imports (start-up is (d)'s figure).
        fakes.tg.add_text_messages([(9_997, "warm up")])
        fakes.tg.wait_for_sent(1, 60, 9_997)
        messages = [(20_000 + i % sizes.b_chats, f"message {i}") for i in range(sizes.b_messages)]
        cpu_before = process.cpu_s()
        got, seconds = send_and_wait(fakes, messages, sizes.b_messages, sizes.b_budget_s)
        figures.b_cpu_ms = (process.cpu_s() - cpu_before) * 1000 / max(1, got)
        figures.b_rate = got / seconds
        figures.b_partial = got < sizes.b_messages
        sent = fakes.tg.sent_since(1, sizes.b_messages)  # after the warm-up's reply
        figures.wrong_replies += sum(1 for _, text, _ in sent if "message " not in text)


def scenario_c(bot: str, sizes: Sizes, setup: Setup, figures: Figures) -> None:
    """(c) reply latency in one chat, one message at a time."""
    with running(bot, setup, figures, llm_latency=0.0) as (fakes, _):
        latencies: list[float] = []
        warmup = 5
        for i in range(sizes.c_rounds + warmup):
            start = time.monotonic()
            fakes.tg.add_text_messages([(777, f"ping {i}")])
            _, _, at = fakes.tg.wait_for_sent(i + 1, 30, 777)[-1]
            if i >= warmup:
                latencies.append((at - start) * 1000)
        figures.c_p50_ms = median(latencies)
        figures.c_p99_ms = percentile(latencies, 0.99)


def scenario_e(bot: str, sizes: Sizes, setup: Setup, figures: Figures) -> None:
    """(e) memory during many chats, and once their actors were evicted."""
    env = {"ACTOR_IDLE_SECONDS": str(sizes.e_idle_s)}
    with running(bot, setup, figures, llm_latency=0.0, extra_env=env) as (fakes, process):
        # The baseline is a served assistant: after one exchange (the model SDK loads then, for
        # every deployment) and a pause (what starts after the first poll has started).
        fakes.tg.add_text_messages([(9_998, "warm up")])
        fakes.tg.wait_for_sent(1, 60, 9_998)
        time.sleep(2)
        figures.e_start_mb = process.tree_rss_mb()
        messages = [(30_000 + i, f"hi {i}") for i in range(sizes.e_chats)]
        with PeakSampler(process.pid) as sampler:
            got, _ = send_and_wait(fakes, messages, sizes.e_chats, 300)
        if got < sizes.e_chats:
            raise RuntimeError(f"{bot}: only {got} of {sizes.e_chats} replies")
        figures.e_peak_mb = sampler.peak_mb
        if bot in ("assistant", "bare"):
            time.sleep(sizes.e_idle_s * 2 + 2)  # the registry evicts idle actors after ACTOR_IDLE_SECONDS
            figures.e_idle_mb = process.tree_rss_mb()


SCENARIOS: tuple[Callable[[str, Sizes, Setup, Figures], None], ...] = (scenario_a, scenario_b, scenario_c, scenario_e)


def main() -> int:
    """Run the scenarios for each bot, print the table, write the plot and a CSV."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a short run")
    parser.add_argument(
        "--bots", default="echo,naive,naivec,assistant,bare", help="comma-separated: " + ",".join(COMMANDS)
    )
    parser.add_argument("--scenarios", default="a,b,c,e", help="comma-separated letters (d is measured in each)")
    parser.add_argument(
        "--python", help="the interpreter of every bot (default: a runtime-only venv, bench/out/venv-runtime)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    bots = [name.strip() for name in args.bots.split(",") if name.strip()]
    unknown = set(bots) - set(COMMANDS)
    if unknown:
        parser.error(f"unknown bots: {', '.join(sorted(unknown))}")
    chosen = [s for s in SCENARIOS if s.__name__[-1] in args.scenarios.split(",")]
    python = args.python or runtime_python()
    compile_sources(python)
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="bench-telegram-") as tmp:
        setup = Setup(Path(tmp), python)
        for bot in bots:
            figures = results[bot] = Figures()
            for scenario in chosen:
                began = time.monotonic()
                try:
                    scenario(bot, sizes, setup, figures)
                except (RuntimeError, TimeoutError) as exc:
                    print(f"{bot} {scenario.__name__} failed: {exc}", file=sys.stderr)
                print(f"  {bot:9} {scenario.__name__} done in {time.monotonic() - began:.1f} s", file=sys.stderr)
            if figures.wrong_replies:
                print(f"  {bot}: {figures.wrong_replies} replies were not the expected answer", file=sys.stderr)
    print(report(results, sizes))
    print("~ = extrapolated from the naive bot's first messages / cut at the time budget")
    write_csv(results, OUT / "telegram.csv")
    print(f"plot: {plot(results, sizes, OUT / 'telegram.png')}; figures: {OUT / 'telegram.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
