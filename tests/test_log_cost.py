"""What logging costs: library request lines stay out at INFO, and the cheap look before redaction
never lets a secret through that the patterns would have caught."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from conf.settings import LogSettings
from ops import logs
from ops.logs import REDACTED, configure_logging
from tests.test_logging import ANTHROPIC_KEY, AWS_KEY_ID, BOT_TOKEN, OPENAI_KEY

REGISTERED = "plain-registered-secret-0042"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    root_level = logging.getLogger().level
    logs._reset_for_tests()
    yield
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().setLevel(root_level)
    for name in (*logs.NOISY_LOGGERS, logs.METRICS_LOGGER_NAME):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize("library", ["httpx2", "aiohttp", "openai", "anthropic", "httpx"])
def test_library_request_lines_are_debug_only(library: str) -> None:
    for level, shown in (("INFO", False), ("DEBUG", True)):
        stream = io.StringIO()
        configure_logging(LogSettings(level=level), stream=stream)  # type: ignore[arg-type]
        logging.getLogger(library).info('HTTP Request: POST http://127.0.0.1/v1/chat/completions "HTTP/1.1 200 OK"')
        assert bool(stream.getvalue()) is shown, (library, level)


def _full(value: str) -> str:
    """What the patterns alone make of a value, without the cheap look first."""
    return logs._redactor._regex.sub(logs._redactor._replace, value)


_PIECES = st.sampled_from(
    [
        BOT_TOKEN,
        OPENAI_KEY,
        ANTHROPIC_KEY,
        AWS_KEY_ID,
        REGISTERED,
        "Bearer abcdefgh12345678",
        "BEARER abcdefgh12345678",
        "Authorization: Basic dXNlcjpwYXNz",
        "x-api-key=abcdef123456",
        "?token=abc123&x=1",
        "https://user:hunter2@example.com/",
        " ",
        "turn",
        "12345",
        "-",
        "/",
        "é",
    ]
)


@given(st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=8).map("".join))
def test_the_cheap_look_redacts_exactly_what_the_patterns_do(value: str) -> None:
    logs._redactor.add([REGISTERED])
    assert logs.redact(value) == (_full(value) if len(value) >= 8 else value)


def test_a_line_without_secrets_comes_out_as_logged_and_one_with_them_redacted() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(), secrets=[REGISTERED], stream=stream)
    log = structlog.get_logger("test")
    log.info("turn_finished", conversation_id="123456789", duration_ms=12.5, note="a reply went out quickly")
    log.info("failed", error=f"401 for key {REGISTERED}", url=f"https://api.telegram.org/bot{BOT_TOKEN}/getMe")
    plain, secret = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (plain["conversation_id"], plain["note"]) == ("123456789", "a reply went out quickly")
    assert secret["error"] == f"401 for key {REDACTED}"
    assert BOT_TOKEN not in secret["url"]
