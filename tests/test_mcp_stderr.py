"""A stdio MCP server's stderr: one redacted JSON log line per line it writes, never raw bytes on ours."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from conf.mcp import McpServerSettings, mcp_secrets
from conf.settings import LogSettings
from ops import logs
from ops.logs import REDACTED, configure_logging
from tests.mcp_helpers import FAKE, FAST, running
from tools import McpConnection

SERVICE_KEY = "svc-live-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    logs._reset_for_tests()
    yield
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)


def server_settings() -> McpServerSettings:
    return McpServerSettings(
        command=sys.executable,
        args=(FAKE,),
        env={
            "FAKE_SERVICE_KEY": SERVICE_KEY,
            "FAKE_MCP_STDERR_LINE": "WARNING: connecting to the service with key {FAKE_SERVICE_KEY}",
        },
        timeout=5,
    )


def stderr_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [entry for entry in entries if entry["event"] == "mcp_server_stderr"]


async def test_a_servers_stderr_is_logged_as_redacted_json_lines(capfd: pytest.CaptureFixture[str]) -> None:
    settings = server_settings()
    stream = io.StringIO()
    configure_logging(LogSettings(), secrets=mcp_secrets({"fake": settings}), stream=stream)
    async with running(McpConnection("fake", settings, FAST)):
        async with asyncio.timeout(5):
            while not stderr_lines(stream):
                await asyncio.sleep(0.01)
    [entry] = stderr_lines(stream)
    assert entry["server"] == "fake"
    assert entry["level"] == "warning"
    assert entry["line"] == f"WARNING: connecting to the service with key {REDACTED}"
    assert SERVICE_KEY not in stream.getvalue()
    assert "connecting to the service" not in capfd.readouterr().err


def test_every_header_and_env_value_is_a_secret_to_redact() -> None:
    servers = {
        "search": McpServerSettings(url="https://search.invalid/mcp", headers={"Authorization": "Bearer abc123xyz789"}),
        "mail": McpServerSettings(command="mail-server", env={"SMTP_PASSWORD": "hunter2-but-longer"}),
    }
    assert sorted(mcp_secrets(servers)) == ["Bearer abc123xyz789", "hunter2-but-longer"]
