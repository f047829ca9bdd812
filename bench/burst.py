"""Memory of a burst of chats by how many conversations may stay in memory (`actors.max_idle`, or
`actors.max_live` with `--knob max_live`).

Scenario (e) of bench/telegram.py, as a user deploys (`python main.py` as a process, cold, the fakes
as processes, the RSS of the whole process tree): one exchange and a pause, then 3,000 new chats
with one message each and an instant model, then two idle periods (`ACTOR_IDLE_SECONDS` 6 s).
Each row is the shipped configuration (`conf/config.yml`, the core alone: no MCP servers) with only
the one setting changed. It shows what the limits trade: the allocator keeps the arenas a burst
adds (pinned by a few objects each), and how many it adds follows the conversations in memory at
the peak; the CPU-aware poll hold keeps the turns in flight near what the CPU runs, and
`max_idle` the idle conversations kept, whatever `max_live`, which (a)'s slow-model turns need high.

    .venv/bin/python bench/burst.py [--chats 3000] [--knob max_idle] [--limits 16,64,128,384] [--python PATH]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bench._harness import PeakSampler, compile_sources, runtime_python  # noqa: E402
from bench.telegram import OUT, Figures, Setup, running, send_and_wait  # noqa: E402

IDLE_S = 6.0


def config_with(knob: str, limit: int, workdir: Path) -> Path:
    """conf/config.yml with `actors.<knob>` set to `limit`."""
    text = (_BENCH.parent / "conf" / "config.yml").read_text()
    changed, count = re.subn(rf"^(\s*{knob}:\s*)\d+", rf"\g<1>{limit}", text, flags=re.MULTILINE)
    if count != 1:
        raise RuntimeError(f"conf/config.yml has no actors.{knob} line to change")
    path = workdir / f"config-{knob}-{limit}.yml"
    path.write_text(changed)
    return path


def burst(knob: str, limit: int, chats: int, setup: Setup) -> dict[str, float]:
    """The tree's RSS before, at its peak and once idle, and the burst's seconds, for one limit."""
    config = config_with(knob, limit, setup.workdir)
    env = {"ACTOR_IDLE_SECONDS": str(IDLE_S), "ASSISTANT_CONFIG": str(config)}
    with running("bare", setup, Figures(), llm_latency=0.0, extra_env=env) as (fakes, process):
        fakes.tg.add_text_messages([(9_998, "warm up")])
        fakes.tg.wait_for_sent(1, 60, 9_998)
        time.sleep(2)
        start = process.tree_rss_mb()
        messages = [(30_000 + i, f"hi {i}") for i in range(chats)]
        with PeakSampler(process.pid) as sampler:
            got, seconds = send_and_wait(fakes, messages, chats, 300)
        if got < chats:
            raise RuntimeError(f"{knob} {limit}: only {got} of {chats} replies")
        time.sleep(IDLE_S * 2 + 2)
        return {"start": start, "peak": sampler.peak_mb, "idle": process.tree_rss_mb(), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=3000)
    parser.add_argument("--knob", choices=("max_idle", "max_live"), default="max_idle", help="the setting varied")
    parser.add_argument("--limits", default="16,64,128,384", help="comma-separated values of the setting")
    parser.add_argument("--python", help="the bot's interpreter (default: bench/out/venv-runtime)")
    args = parser.parse_args()
    limits = [int(value) for value in args.limits.split(",") if value.strip()]
    python = args.python or runtime_python()
    compile_sources(python)
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        setup = Setup(Path(tmp), python)
        for limit in limits:
            results[limit] = burst(args.knob, limit, args.chats, setup)
            print(f"  {args.knob} {limit}: done", file=sys.stderr)
    print(f"| actors.{args.knob} | start MB | peak MB | idle MB | idle minus start MB | {args.chats} chats in s |")
    print("|---|---|---|---|---|---|")
    for limit, row in results.items():
        print(
            f"| {limit} | {row['start']:.1f} | {row['peak']:.1f} | {row['idle']:.1f} "
            f"| {row['idle'] - row['start']:+.1f} | {row['seconds']:.2f} |"
        )
    print(f"plot: {plot(results, args.knob, OUT / 'burst.png')}")
    return 0


def plot(results: dict[int, dict[str, float]], knob: str, path: Path) -> Path | None:
    """Peak and idle RSS above the start, by limit (matplotlib, when installed)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(limit) for limit in results]
    figure, axis = plt.subplots(figsize=(7, 4))
    for offset, key in ((-0.2, "peak"), (0.2, "idle")):
        values = [row[key] - row["start"] for row in results.values()]
        bars = axis.bar([i + offset for i in range(len(labels))], values, width=0.4, label=f"{key} minus start")
        axis.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8)
    axis.set_xticks(range(len(labels)), labels)
    axis.set_xlabel(f"actors.{knob}")
    axis.set_ylabel("MB of the process tree")
    axis.axhline(10, color="grey", linestyle="--", linewidth=0.8)
    axis.legend()
    axis.set_title(f"A burst of chats: memory above the start, by actors.{knob}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


if __name__ == "__main__":
    sys.exit(main())
