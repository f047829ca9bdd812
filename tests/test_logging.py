"""Logging: one redacted JSON object per line, for our loggers and the libraries' alike."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from conf.settings import LogSettings
from ops import logs
from ops.logs import REDACTED, add_secrets, configure_logging, redact

# Shaped like the real thing, so the patterns (not only registration) are exercised.
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
OPENAI_KEY = "sk-proj-Abc123Def456Ghi789Jkl012Mno345"
ANTHROPIC_KEY = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    yield
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)
    for name in (*logs.NOISY_LOGGERS, logs.METRICS_LOGGER_NAME):
        logging.getLogger(name).setLevel(logging.NOTSET)


def configure(level: str = "INFO", fmt: str = "json", secrets: tuple[str, ...] = ()) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(LogSettings(level=level, format=fmt), secrets=secrets, stream=stream)  # type: ignore[arg-type]
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_is_one_json_object_with_utc_timestamp_level_and_event() -> None:
    stream = configure()
    structlog.get_logger("tests.logging").info("turn_done", duration_ms=812)
    [line] = lines(stream)
    assert list(line)[:3] == ["timestamp", "level", "event"]
    assert line["event"] == "turn_done"
    assert line["level"] == "info"
    assert line["duration_ms"] == 812
    assert line["logger"] == "tests.logging"
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None
    assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_lines_below_the_level_are_dropped() -> None:
    stream = configure(level="WARNING")
    log = structlog.get_logger("tests.logging")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_an_exception_is_a_field_of_the_one_line_and_its_message_is_redacted() -> None:
    stream = configure(secrets=(BOT_TOKEN,))
    log = structlog.get_logger("tests.logging")
    try:
        raise RuntimeError(f"request to /bot{BOT_TOKEN}/sendMessage failed")
    except RuntimeError:
        log.exception("send_failed", chat_id=7)
    output = stream.getvalue()
    assert output.count("\n") == 1
    assert BOT_TOKEN not in output
    [line] = lines(stream)
    [exception] = line["exception"]
    assert exception["exc_type"] == "RuntimeError"
    assert exception["exc_value"] == f"request to /bot{REDACTED}/sendMessage failed"
    assert exception["frames"], "the traceback's frames are structured data"
    assert line["level"] == "error"


def test_an_unregistered_token_in_an_exception_chain_is_caught_by_the_patterns() -> None:
    stream = configure()  # nothing registered
    log = structlog.get_logger("tests.logging")
    try:
        try:
            raise ValueError(f"key {OPENAI_KEY} rejected")
        except ValueError as exc:
            raise RuntimeError(f"https://api.telegram.org/bot{BOT_TOKEN}/getMe") from exc
    except RuntimeError as exc:
        log.error("startup_failed", exc_info=exc)
    output = stream.getvalue()
    assert BOT_TOKEN not in output
    assert OPENAI_KEY not in output
    assert output.count(REDACTED) == 2


def test_httpx_request_urls_come_out_as_redacted_json() -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the server's own access log is not under test

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-bot-api", daemon=True)
    thread.start()
    try:
        stream = configure(level="DEBUG")  # httpx logs requests at INFO: visible only in DEBUG
        with structlog.contextvars.bound_contextvars(update_id=99), httpx.Client() as client:
            response = client.get(f"http://127.0.0.1:{server.server_port}/bot{BOT_TOKEN}/getMe")
        assert response.status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    output = stream.getvalue()
    assert BOT_TOKEN not in output
    requests = [line for line in lines(stream) if line["logger"] == "httpx"]
    assert len(requests) == 1
    assert f"/bot{REDACTED}/getMe" in requests[0]["event"]
    assert requests[0]["update_id"] == 99, "stdlib records carry the bound context too"


def test_noisy_libraries_are_quiet_unless_debug() -> None:
    stream = configure(level="INFO")
    logging.getLogger("httpx").info("HTTP Request: GET http://example.invalid/")
    logging.getLogger("botocore.endpoint").debug("sending")
    logging.getLogger("mcp.client").warning("server_gone")
    logging.getLogger("someapp").info("kept")
    assert [(line["logger"], line["event"]) for line in lines(stream)] == [
        ("mcp.client", "server_gone"),
        ("someapp", "kept"),
    ]


def test_stdlib_exceptions_are_structured_and_redacted() -> None:
    stream = configure()
    try:
        raise ConnectionError(f"Authorization: Bearer {ANTHROPIC_KEY}")
    except ConnectionError:
        logging.getLogger("anthropic").exception("request failed")
    assert ANTHROPIC_KEY not in stream.getvalue()
    [line] = lines(stream)
    assert line["exception"][0]["exc_value"] == f"Authorization: Bearer {REDACTED}"


async def test_context_is_per_task_so_conversations_do_not_mix() -> None:
    stream = configure()
    log = structlog.get_logger("tests.logging")
    both_bound = asyncio.Barrier(2)

    async def conversation(conversation_id: str) -> None:
        with structlog.contextvars.bound_contextvars(conversation_id=conversation_id):
            await both_bound.wait()
            log.info("turn_started")

    async with asyncio.TaskGroup() as group:
        group.create_task(conversation("a"), name="conversation-a")
        group.create_task(conversation("b"), name="conversation-b")
    log.info("outside")
    by_event = sorted((line["event"], line.get("conversation_id")) for line in lines(stream))
    assert by_event == [("outside", None), ("turn_started", "a"), ("turn_started", "b")]


def test_nested_values_and_objects_are_redacted() -> None:
    stream = configure(secrets=("registered-secret-value",))
    structlog.get_logger("tests.logging").info(
        "request",
        headers={"x-api-key": "abcdef0123456789", "accept": "application/json"},
        urls=[httpx.URL(f"https://api.telegram.org/bot{BOT_TOKEN}/getUpdates?offset=3")],
        note=("registered-secret-value", 3),
    )
    output = stream.getvalue()
    for secret in ("abcdef0123456789", BOT_TOKEN, "registered-secret-value"):
        assert secret not in output
    [line] = lines(stream)
    assert line["headers"]["accept"] == "application/json"
    assert line["urls"] == [f"https://api.telegram.org/bot{REDACTED}/getUpdates?offset=3"]
    assert line["note"] == [REDACTED, 3]


def test_aws_credentials_from_the_environment_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEBYaDHqa0AP1/session+token==")
    stream = configure()
    logging.getLogger("botocore.credentials").warning(
        "credentials %s %s %s", AWS_KEY_ID, AWS_SECRET, "FwoGZXIvYXdzEBYaDHqa0AP1/session+token=="
    )
    output = stream.getvalue()
    assert AWS_KEY_ID not in output
    assert AWS_SECRET not in output
    assert "FwoGZXIvYXdzEBYaDHqa0AP1" not in output
    assert lines(stream)[0]["event"] == f"credentials {REDACTED} {REDACTED} {REDACTED}"


def test_secrets_added_later_are_redacted_from_then_on() -> None:
    stream = configure()
    log = structlog.get_logger("tests.logging")
    add_secrets("late-secret-123")
    log.info("value", v="late-secret-123")
    assert lines(stream)[0]["v"] == REDACTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"POST https://api.telegram.org/bot{BOT_TOKEN}/getUpdates",
            f"POST https://api.telegram.org/bot{REDACTED}/getUpdates",
        ),
        (f"Authorization: Bearer {OPENAI_KEY}", f"Authorization: Bearer {REDACTED}"),
        ("{'x-api-key': 'k3y-abcdef-0123'}", f"{{'x-api-key': '{REDACTED}'}}"),
        ("x-api-key=k3y-abcdef-0123&y=1", f"x-api-key={REDACTED}&y=1"),
        (
            "https://gen.example/v1/models?key=AIzaSyA-abc_123&alt=sse",
            f"https://gen.example/v1/models?key={REDACTED}&alt=sse",
        ),
        ("https://bob:hunter2hunter2@db.example/x", f"https://bob:{REDACTED}@db.example/x"),
        (f"access key {AWS_KEY_ID} used", f"access key {REDACTED} used"),
        ("bearer abcdefgh.ijklmnop", f"bearer {REDACTED}"),
        ("turn_done in 812 ms", "turn_done in 812 ms"),
        ("conversation 123456789 offset 42", "conversation 123456789 offset 42"),
        ("short", "short"),
    ],
)
def test_patterns_catch_secrets_nobody_registered(text: str, expected: str) -> None:
    assert redact(text) == expected


@given(
    token=st.from_regex(r"\A[1-9][0-9]{5,10}:[A-Za-z0-9_-]{35}\Z"),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_any_bot_token_anywhere_in_a_string_is_redacted(token: str, before: str, after: str) -> None:
    # Text glued on the left may extend the token's digits; that prefix is redacted with it.
    assert token.split(":", 1)[1] not in redact(f"{before}/bot{token}/{after}")


def test_console_format_is_readable_and_still_redacted() -> None:
    stream = configure(fmt="console", secrets=(BOT_TOKEN,))
    log = structlog.get_logger("tests.logging")
    try:
        raise RuntimeError(f"token {BOT_TOKEN}")
    except RuntimeError:
        log.exception("send_failed", chat_id=7)
    output = stream.getvalue()
    assert "send_failed" in output
    assert "chat_id=7" in output
    assert "Traceback" in output
    assert BOT_TOKEN not in output
    assert f"RuntimeError: token {REDACTED}" in output
    assert "\x1b[" not in output, "no colour codes when the stream is not a terminal"


def test_reconfiguring_replaces_the_handler_instead_of_doubling_lines() -> None:
    first = configure()
    second = configure()
    structlog.get_logger("tests.logging").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1
    ours = [handler for handler in logging.getLogger().handlers if isinstance(handler, logs._StdoutHandler)]
    assert len(ours) == 1


def test_without_a_stream_lines_go_to_stdout_as_it_is_now(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LogSettings())
    structlog.get_logger("tests.logging").info("to_stdout")
    captured = capsys.readouterr()
    assert json.loads(captured.out)["event"] == "to_stdout"
    assert captured.err == ""


def test_cached_loggers_keep_working_after_reconfiguration() -> None:
    stream = io.StringIO()
    configure_logging(LogSettings(), stream=stream, cache_loggers=True)
    log = structlog.get_logger("tests.logging.cached")
    log.info("first")
    stream2 = io.StringIO()
    configure_logging(LogSettings(format="console"), stream=stream2, cache_loggers=True)
    log.info("second")
    assert json.loads(stream.getvalue())["event"] == "first"
    assert "second" in stream2.getvalue()
    assert not stream2.getvalue().startswith("{")


def test_an_unformattable_stdlib_record_is_one_json_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    stream = configure()
    [handler] = [handler for handler in logging.getLogger().handlers if isinstance(handler, logs._StdoutHandler)]
    # One argument missing: formatting fails. Handled directly, because pytest's own capture
    # handler on the root logger would raise on this record before ours saw it.
    record = logging.LogRecord("somelib", logging.WARNING, __file__, 1, "two args %s %s", (BOT_TOKEN,), None)
    handler.handle(record)
    assert capsys.readouterr().err == ""
    [line] = lines(stream)
    assert line == {"event": "log_record_unformattable", "level": "error", "logger": "somelib"}
