"""End to end with `python main.py` as a real process: kill -9 and restart, SIGTERM, --check, --console."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e_support import ROOT, AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeLLMRequest, FakeLLMServer, Hang
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.slow


async def load_records(store_dir: Path, conversation_id: str) -> list[dict[str, object]]:
    from stores import FileConversationStore

    async with FileConversationStore(store_dir) as store:
        return await store.load(conversation_id)


async def test_kill_9_mid_turn_then_restart_answers_once_and_stores_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    process = AssistantProcess(assistant_env(tg, llm, store_dir), tmp_path / "assistant.log")
    hang_first = [True]

    def handler(request: FakeLLMRequest) -> Hang | None:
        if request.last_user_text == "survive the crash" and hang_first[0]:
            hang_first[0] = False
            return Hang()
        return None

    llm.script(handler)
    process.start()
    try:
        update_id = tg.add_text_message(42, "survive the crash")
        await llm.await_requests(1, timeout=20)  # the turn is under way: ingress and store hold the message
        await tg.await_calls("getUpdates", count=2, timeout=20)  # the poll after the one that fetched it
        assert tg.confirmed_offset > update_id  # Telegram considers it delivered
        process.kill9()
        assert tg.sent_to(42) == []

        process.start()
        [answer] = await tg.await_sent(chat_id=42, timeout=30)
        assert answer.text == "echo: survive the crash"
        tg.add_text_message(42, "and after?")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=20)
        assert [message.text for message in sent] == ["echo: survive the crash", "echo: and after?"]
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    records = await load_records(store_dir, "42")
    users = [record for record in records if record.get("role") == "user"]
    assert [(record["content"], record["update_id"]) for record in users] == [
        ("survive the crash", update_id),
        ("and after?", update_id + 1),
    ]
    assert len([r for r in records if r.get("type") == "delivered"]) == 2


async def test_sigterm_lets_a_running_turn_finish_and_exits_0(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.latency = 1.0
    process = AssistantProcess(assistant_env(tg, llm, tmp_path / "store"), tmp_path / "assistant.log")
    process.start()
    try:
        tg.add_text_message(42, "finish me")
        await llm.await_requests(1, timeout=20)
        exit_code = await asyncio.to_thread(process.terminate)
        assert exit_code == 0, process.log_text()[-2000:]
        assert [message.text for message in tg.sent_to(42)] == ["echo: finish me"]
    finally:
        process.ensure_dead()


def run_main(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_reports_every_component(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> None:
    env = assistant_env(tg, llm, tmp_path / "store")
    result = run_main(["--check"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    components, features, summary = lines[:4], lines[4:-1], lines[-1]
    assert [line.split(":")[0] for line in components] == ["telegram", "llm (openai)", "store (file)", "mcp"]
    assert all(": ok (" in line for line in components)
    assert "@test_assistant_bot" in lines[0]
    assert [line.split(":")[0] for line in features] == ["streaming", "speech", "webhook", "queue", "budget"]
    assert features[0].startswith("streaming: ok (on, answers grow as the model writes: ")
    assert summary == "summary: ok (5 of 5 checks passed; features on: streaming, speech)"


def test_check_says_which_component_failed(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> None:
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_BOT_TOKEN="999:wrong-token-for-the-fake")
    result = run_main(["--check"], env)
    assert result.returncode == 1
    telegram_line = result.stdout.splitlines()[0]
    assert telegram_line.startswith("telegram: FAILED (")
    assert "wrong-token" not in result.stdout + result.stderr
    assert ": ok (" in result.stdout  # the others still ran
    assert result.stdout.splitlines()[-1] == "summary: FAILED (1 of 5 checks failed: telegram)"  # speech is on


def test_console_holds_a_conversation_until_end_of_input(llm: FakeLLMServer, tmp_path: Path) -> None:
    env = {
        "LLM_BASE_URL": llm.openai_base_url,
        "LLM_API_KEY": "sk-test",
        "STORE_DIR": str(tmp_path / "store"),
        "MCP_CONFIG": str(tmp_path / "none.yml"),
        "HEALTH_PORT": "0",
    }
    (tmp_path / "none.yml").write_text("servers: {}\n")
    result = run_main(["--console"], env, stdin="hello\n\nhow are you?\n/new\nfresh start\n")
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.strip()]
    assert answers[0] == "echo: hello"
    assert answers[1] == "echo: how are you?"
    assert answers[-1] == "echo: fresh start"
    assert [len([m for m in r.messages if m["role"] == "user"]) for r in llm.requests] == [1, 2, 1]


def test_a_refused_token_exits_1_and_never_shows_the_token(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    config = (ROOT / "conf" / "config.yml").read_text()
    config = config.replace("initial_seconds: 0.5", "initial_seconds: 0.01").replace(
        "max_restarts: 5", "max_restarts: 1"
    )
    (tmp_path / "config.yml").write_text(config)
    token = "999:not-the-fakes-token-0123456789abcdefghij"
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_BOT_TOKEN=token, LOG_LEVEL="INFO")
    result = run_main(["--config", str(tmp_path / "config.yml")], env)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    events = [line["event"] for line in lines]
    assert "supervisor_escalation" in events
    crashed = [line for line in lines if line["event"] == "child_crashed"]
    assert crashed
    assert "exception" in crashed[0]  # the traceback is a field of the line, not extra lines
    assert token not in result.stdout + result.stderr
    assert "not-the-fakes-token" not in result.stdout + result.stderr


def test_the_console_stops_at_once_on_sigint_while_waiting_for_input(llm: FakeLLMServer, tmp_path: Path) -> None:
    (tmp_path / "none.yml").write_text("servers: {}\n")
    env = {
        **os.environ,
        "LLM_BASE_URL": llm.openai_base_url,
        "LLM_API_KEY": "sk-test",
        "STORE_DIR": str(tmp_path / "store"),
        "MCP_CONFIG": str(tmp_path / "none.yml"),
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [sys.executable, "main.py", "--console"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdin is not None
        assert process.stderr is not None
        process.stdin.write("hello\n")
        process.stdin.flush()
        for line in process.stderr:  # the logs: wait until the first turn is answered
            if "turn_finished" in line:
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
