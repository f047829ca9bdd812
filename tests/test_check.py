"""`python main.py --check` for a person: one line per component and feature, a summary, no log lines."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.check import Feature, run_checks
from conf import load_settings
from tests.e2e_support import ROOT, assistant_env
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer
from tests.mcp_helpers import FAKE, FAKE_TOOLS

LINE = re.compile(r"^[a-z][a-z0-9 ()_.-]*: (ok|FAILED|off|on) \(.+\)$")


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", "--check", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.slow
def test_check_prints_only_its_lines_with_features_and_a_summary(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    mcp = tmp_path / "mcp.yml"
    mcp.write_text(
        "servers:\n"
        f"  fake: {{command: {json.dumps(sys.executable)}, args: [{json.dumps(FAKE)}]}}\n"
        "  broken: {command: /nonexistent/mcp-server}\n",
        encoding="utf-8",
    )
    config = tmp_path / "config.yml"
    shipped = (ROOT / "conf" / "config.yml").read_text(encoding="utf-8")
    config.write_text(shipped.replace("\n  stream: false", "\n  stream: true", 1), encoding="utf-8")
    env = assistant_env(
        tg,
        llm,
        tmp_path / "store",
        LOG_LEVEL="INFO",  # the libraries' INFO request lines would show up here if not kept out
        MCP_CONFIG=str(mcp),
        FAKE_MCP_STDERR_LINE="Processing request of type ListToolsRequest",
    )
    result = run_check(env, "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if not LINE.match(line)] == [], result.stdout

    names = [line.split(": ", 1)[0] for line in lines]
    assert names == [
        "telegram", "llm (openai)", "store (file)", "mcp fake", "mcp broken",
        "streaming", "speech", "webhook", "queue", "budget", "summary",
    ]  # fmt: skip
    by_name = dict(line.split(": ", 1) for line in lines)
    fake = re.fullmatch(r"ok \((\d+) tools: (.+)\)", by_name["mcp fake"])
    assert fake, by_name["mcp fake"]
    assert sorted(fake.group(2).split(", ")) == FAKE_TOOLS
    assert by_name["mcp broken"].startswith("FAILED (")
    streamed = r"model gpt-4o-mini streamed \d+ characters in [1-9]\d* pieces, \d+ ms"
    assert re.fullmatch(rf"ok \(on, answers grow as the model writes: {streamed}\)", by_name["streaming"]), by_name
    assert any(request.stream for request in llm.requests), "the streaming probe streamed"
    # Speech falls back to the OpenAI-compatible chat server, which transcribes a probe of silence.
    assert re.fullmatch(r"ok \(on, whisper-1: the endpoint answered, \d+ ms\)", by_name["speech"]), by_name
    assert [request.file_name for request in llm.audio_requests] == ["check.wav"]
    assert by_name["budget"] == "off (unlimited)"
    assert by_name["summary"] == "FAILED (1 of 7 checks failed: mcp broken)"
    # Logs went to stderr, and only warnings and errors: no request line, no server chatter.
    for line in result.stderr.splitlines():
        assert json.loads(line)["level"] in {"warning", "error", "critical"}, line
    assert "ListToolsRequest" not in result.stdout + result.stderr


async def test_a_feature_adds_its_line_with_one_probe(llm: FakeLLMServer, tmp_path: Path) -> None:
    settings = load_settings(
        ROOT / "conf" / "config.yml",
        env={"LLM_BASE_URL": llm.openai_base_url, "LLM_API_KEY": "sk-test", "STORE_BACKEND": "memory"},
    )

    async def unreachable() -> str:
        raise ConnectionRefusedError("connection refused by 127.0.0.1:9")

    async def answers() -> str:
        return "the endpoint answered"

    features = {
        "queue": lambda _: Feature(False, "not configured"),
        "webhook": lambda _: Feature(True, "https://bot.example/hook", unreachable),
        "speech": lambda _: Feature(True, "whisper-1", answers),
        "beta": lambda _: Feature(True, "nothing to reach"),
    }
    out = io.StringIO()
    assert await run_checks(settings, {}, out, telegram=False, features=features) == 1
    lines = out.getvalue().splitlines()
    assert lines[3:] == [
        "queue: off (not configured)",
        "webhook: FAILED (on, https://bot.example/hook: ConnectionRefusedError: connection refused by 127.0.0.1:9)",
        lines[5],
        "beta: on (nothing to reach)",
        "summary: FAILED (1 of 4 checks failed: webhook)",
    ]
    assert re.fullmatch(r"speech: ok \(on, whisper-1: the endpoint answered, \d+ ms\)", lines[5]), lines[5]
    assert lines[:3] == [lines[0], lines[1], "mcp: ok (no server enabled)"]
    assert lines[0].startswith("llm (openai): ok (model gpt-4o-mini answered ")
    assert lines[1].startswith("store (memory): ok (wrote, read and deleted a probe, ")
