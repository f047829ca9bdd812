"""CPU per log line through the whole pipeline (structlog, redaction, JSON), and redaction alone.

Typical lines of a turn (no secret in them), one with a secret, and a metrics line:

    .venv/bin/python bench/log_lines.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from bench._harness import format_table
from conf.settings import LogSettings
from ops import logs

SECRET = "sk-live-0123456789abcdefghijklmnop"
LINES = {
    "turn_finished": {
        "conversation_id": "123456789",
        "update_id": 100001,
        "steps": 1,
        "duration_ms": 12.34,
        "model_ms": 5.5,
        "tool_ms": 0.0,
        "step_limit": False,
    },
    "update_routed": {"update_id": 100001, "conversation_id": "123456789", "replay": False},
    "telegram_send_retry": {
        "chat_id": 123456789,
        "attempt": 1,
        "wait_s": 0.5,
        "error": "aiohttp.ServerDisconnectedError: Server disconnected",
    },
    "with_secret": {"error": f"401 from https://api.example.com/v1?key={SECRET}", "conversation_id": "1"},
}


def per_line_us(event: str, fields: dict[str, object], count: int) -> tuple[float, float]:
    """(whole pipeline, redaction alone) in µs per line."""
    log = structlog.get_logger("bench")
    started = time.process_time()
    for _ in range(count):
        log.info(event, **fields)
    whole = (time.process_time() - started) * 1e6 / count
    line = {"timestamp": "2026-01-01T12:00:00.000000Z", "level": "info", "event": event, "logger": "bench", **fields}
    started = time.process_time()
    for _ in range(count):
        logs._redact_event(None, "info", dict(line))
    alone = (time.process_time() - started) * 1e6 / count
    return whole, alone


def main() -> int:
    """Print µs per line for each kind of line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    logs.configure_logging(
        LogSettings(),
        secrets=[SECRET, "123456:TEST-secret-token-abcdefghijklmnop"],
        stream=io.StringIO(),
        cache_loggers=True,
    )
    rows = []
    for event, fields in LINES.items():
        whole, alone = per_line_us(event, fields, args.lines)
        rows.append([event, f"{whole:.1f}", f"{alone:.1f}"])
    print(format_table(["line", "whole pipeline µs", "redaction µs"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
