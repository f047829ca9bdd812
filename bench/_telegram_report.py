"""The Telegram benchmark's table, CSV and plot (bench/telegram.py measures; this shows)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench._harness import format_table, median

if TYPE_CHECKING:
    from bench.telegram import Figures, Sizes

__all__ = ["plot", "report", "write_csv"]

ASSISTANTS = ("assistant", "bare")


@dataclass(frozen=True)
class Row:
    """One figure: how to read it from a bot's Figures, its target, and the bot its ratio is to."""

    label: str
    target: str
    get: Callable[[Figures], float | None]
    anchor: str | None = None
    digits: int = 2
    approx: str = ""


def _start(f: Figures) -> float | None:
    return median(f.d_start_s) if f.d_start_s else None


def _start_rss(f: Figures) -> float | None:
    return median(f.d_rss_mb) if f.d_rss_mb else None


def _idle_growth(f: Figures) -> float | None:
    return None if f.e_idle_mb is None or f.e_start_mb is None else f.e_idle_mb - f.e_start_mb


def rows(sizes: Sizes) -> list[Row]:
    """The table's rows, in the issue's order."""
    return [
        Row(
            f"(a) wall s, {sizes.a_chats} chats at once, model 1 s",
            "<= 0.3x naivec",
            lambda f: f.a_wall_s,
            "naivec",
            approx="a_extrapolated",
        ),
        Row(
            f"(b) msg/s, {sizes.b_messages} msgs / {sizes.b_chats} chats",
            ">= 0.5x echo",
            lambda f: f.b_rate,
            "echo",
            1,
            "b_partial",
        ),
        Row("(b) CPU ms per message (process tree)", "", lambda f: f.b_cpu_ms, "echo", 2),
        Row("(c) reply p50 ms, one chat", "<= 2.5x echo", lambda f: f.c_p50_ms, "echo", 1),
        Row("(c) reply p99 ms, one chat", "", lambda f: f.c_p99_ms, "echo", 1),
        Row("(d) start to first getUpdates s (median)", "<= 1.5x echo", _start, "echo"),
        Row("(d) tree RSS at first getUpdates MB", "<= 80", _start_rss, None, 1),
        Row(f"(e) peak tree RSS, {sizes.e_chats} chats MB", "<= 100", lambda f: f.e_peak_mb, None, 1),
        Row("(e) tree RSS once idle, minus before the burst MB", "<= 10", _idle_growth, None, 1),
    ]


def _fmt(value: float | None, digits: int, approx: bool = False) -> str:
    if value is None:
        return "n/a"
    return ("~" if approx else "") + f"{value:.{digits}f}"


def report(results: dict[str, Figures], sizes: Sizes) -> str:
    """The table: each bot's figures, then the assistants' ratios to each row's anchor."""
    bots = list(results)
    assistants = [bot for bot in bots if bot in ASSISTANTS]
    table: list[list[str]] = []
    for row in rows(sizes):
        cells = [row.label, row.target]
        cells += [
            _fmt(row.get(results[bot]), row.digits, bool(row.approx) and getattr(results[bot], row.approx))
            for bot in bots
        ]
        for bot in assistants:
            value = row.get(results[bot])
            base = row.get(results[row.anchor]) if row.anchor in results else None
            cells.append(f"{value / base:.2f}" if value is not None and base else "")
        table.append(cells)
    headers = ["figure", "target", *bots, *[f"{bot} ratio" for bot in assistants]]
    return format_table(headers, table)


def write_csv(results: dict[str, Figures], path: Path) -> None:
    """Every figure of every bot, one row per bot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["a_wall_s", "b_rate", "b_cpu_ms", "c_p50_ms", "c_p99_ms", "e_start_mb", "e_peak_mb", "e_idle_mb"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bot", *names, "d_start_s", "d_rss_mb"])
        for bot, figures in results.items():
            values = [getattr(figures, name) for name in names]
            writer.writerow([bot, *values, _start(figures), _start_rss(figures)])


_COLOURS = {"echo": "#999999", "naive": "#d9822b", "naivec": "#e8b04a", "assistant": "#2b7bd9", "bare": "#6fa8e8"}


def plot(results: dict[str, Figures], sizes: Sizes, path: Path) -> Path:
    """Bars per figure, one per bot: a PNG with matplotlib, else a plain SVG. Returns the file."""
    panels = [row for row in rows(sizes) if "p99" not in row.label]
    try:
        import matplotlib
    except ImportError:
        return _svg(results, panels, path.with_suffix(".svg"))
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 4, figsize=(16, 7))
    for axis, row in zip(axes.flat, panels, strict=False):
        names = [bot for bot in results if row.get(results[bot]) is not None]
        values = [float(row.get(results[bot]) or 0) for bot in names]
        bars = axis.bar(names, values, color=[_COLOURS.get(name, "#555555") for name in names])
        axis.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
        axis.set_title(f"{row.label}\ntarget {row.target or '-'}", fontsize=8)
    figure.suptitle("Telegram end to end: bots as processes, fakes as processes, RSS of the process tree")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _svg(results: dict[str, Figures], panels: list[Row], path: Path) -> Path:
    """A minimal bar chart per figure, without matplotlib."""
    width, height, parts = 260, 200, []
    for index, row in enumerate(panels):
        x0, y0 = (index % 4) * width, (index // 4) * height
        parts.append(f'<text x="{x0 + 5}" y="{y0 + 15}" font-size="10">{row.label}</text>')
        values = {bot: row.get(figures) for bot, figures in results.items()}
        top = max((v for v in values.values() if v), default=1.0)
        for slot, (bot, value) in enumerate(values.items()):
            bar = 0.0 if value is None else 140 * value / top
            x = x0 + 10 + slot * 48
            parts.append(
                f'<rect x="{x}" y="{y0 + 170 - bar}" width="36" height="{bar}" fill="{_COLOURS.get(bot, "#555")}"/>'
            )
            parts.append(f'<text x="{x}" y="{y0 + 185}" font-size="9">{bot}</text>')
            parts.append(f'<text x="{x}" y="{y0 + 165 - bar}" font-size="9">{_fmt(value, 3)}</text>')
    rows_count = (len(panels) + 3) // 4
    size = f'width="{4 * width}" height="{rows_count * height}"'
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" {size}>{"".join(parts)}</svg>'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    return path
