"""Helpers for the benchmarks: bot subprocesses, memory readings, statistics, tables."""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "REPO",
    "RUNTIME_VENV",
    "BotProcess",
    "PeakSampler",
    "compile_sources",
    "format_table",
    "percentile",
    "rss_mb",
    "runtime_python",
    "tree_cpu_s",
    "tree_pids",
    "tree_rss_mb",
]

REPO = Path(__file__).resolve().parent.parent
RUNTIME_VENV = REPO / "bench" / "out" / "venv-runtime"
"""A virtualenv with requirements.txt alone, as a user's deployment has (the dev venv adds rich,
pygments, ... which structlog and python-telegram-bot import when they are there)."""


def runtime_python(venv: Path = RUNTIME_VENV) -> Path:
    """The interpreter of `venv`, made with `python -m venv` and `pip install -r requirements.txt`
    on first use, and installed again when requirements.txt changed (delete the folder to drop
    packages that left it)."""
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = (REPO / "requirements.txt").read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        print(f"creating a runtime-only virtualenv in {venv} (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing requirements.txt into {venv} (once) ...", file=sys.stderr)
    requirements = str(REPO / "requirements.txt")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", requirements], check=True)
    stamp.write_text(wanted)
    return python


def compile_sources(python: Path | str) -> None:
    """Byte-compile our packages with `python`, as a user's first run leaves them (__pycache__), so
    that no measured start compiles our sources."""
    packages = sorted(p.name for p in REPO.iterdir() if (p / "__init__.py").exists() and p.name != "tests")
    subprocess.run([str(python), "-m", "compileall", "-q", *packages], cwd=REPO, check=True)


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_pids(pid: int) -> list[int]:
    """The process and all its descendants (from /proc/<pid>/task/<tid>/children)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:  # the task ended meanwhile
                continue
    return pids


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process and its descendants (MCP servers, ...), summed, in MB."""
    total = 0.0
    for member in tree_pids(pid):
        try:
            total += rss_mb(member)
        except (OSError, RuntimeError):  # exited (or a zombie) between the listing and the reading
            continue
    return total


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process and its living descendants have used so far."""
    total = 0.0
    for member in tree_pids(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
    return total


class PeakSampler:
    """Samples a process tree's RSS in a thread every `interval_s` while active; `peak_mb` is the most seen."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._pid = pid
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_mb = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self._pid))

    def __enter__(self) -> PeakSampler:
        self.peak_mb = tree_rss_mb(self._pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, tree_rss_mb(self._pid))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of `values`."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median of `values`."""
    return float(statistics.median(values))


class BotProcess:
    """A bot run by `python` (this interpreter unless told) as a subprocess from the repository
    root; output goes to `log_path`. Python writes bytecode caches there, as in a user's run,
    whatever PYTHONDONTWRITEBYTECODE says here."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        python: Path | str = sys.executable,
    ) -> None:
        self.name = name
        self.argv = [str(python), *argv]
        inherited = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        self.env = {**inherited, **env}
        self.log_path = log_path
        self.started_at = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def __enter__(self) -> BotProcess:
        self._log = self.log_path.open("wb")
        self.started_at = time.monotonic()
        self._process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The process id."""
        assert self._process is not None
        return self._process.pid

    def rss_mb(self) -> float:
        """Its resident memory now, in MB."""
        return rss_mb(self.pid)

    def tree_rss_mb(self) -> float:
        """The resident memory of it and its children (MCP servers), summed, in MB."""
        return tree_rss_mb(self.pid)

    def cpu_s(self) -> float:
        """CPU seconds it and its children have used so far."""
        return tree_cpu_s(self.pid)

    def check_alive(self) -> None:
        """Raise with the tail of its log if it has exited."""
        assert self._process is not None
        if self._process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self._process.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded to line up in a terminal too."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=False)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
