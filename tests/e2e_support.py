"""Shared pieces of the end-to-end tests: settings pointing at the fakes, and a running system."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.system import AssistantSystem
from conf import Settings, load_settings
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer

if TYPE_CHECKING:  # bench/scale.py imports this module too, where pytest need not load
    import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "config.yml"


def assistant_env(tg: FakeTelegramServer, llm: FakeLLMServer, store_dir: Path, **extra: str) -> dict[str, str]:
    """The contract's variables, pointing at the fakes."""
    mcp = store_dir.parent / "mcp-empty.yml"
    mcp.write_text("servers: {}\n")
    return {
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_BASE_URL": tg.base_url,
        "TELEGRAM_ALLOWED_USER_IDS": "*",
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm.openai_base_url,
        "LLM_API_KEY": "sk-test-key-0123456789abcdef",
        "STORE_DIR": str(store_dir),
        "MCP_CONFIG": str(mcp),
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def dynamodb_variables(endpoint: str, table: str, region: str = "us-east-1") -> dict[str, str]:
    """The contract's variables for the DynamoDB backend on moto at `endpoint`, its tables made at start."""
    return {
        "STORE_BACKEND": "dynamodb",
        "DYNAMODB_ENDPOINT_URL": endpoint,
        "DYNAMODB_TABLE": table,
        "DYNAMODB_CREATE_TABLE": "true",
        "AWS_REGION": region,
    }


@contextmanager
def moto_dynamodb(monkeypatch: pytest.MonkeyPatch, table: str, region: str = "us-east-1") -> Iterator[dict[str, str]]:
    """moto's server for the block, with fake AWS credentials; yields `dynamodb_variables` for it."""
    from tests.fakes.moto_server import fake_aws_credentials, moto_server  # moto loads only where a test uses it

    fake_aws_credentials(monkeypatch)
    with moto_server() as endpoint:
        yield dynamodb_variables(endpoint, table, region)


def fast_settings(env: dict[str, str], **llm: Any) -> Settings:
    """Settings from the shipped file, with backoff and retry budgets small enough for tests."""
    settings = load_settings(SHIPPED, env=env)
    backoff = settings.backoff.model_copy(update={"initial_seconds": 0.05, "max_seconds": 0.2, "jitter_seconds": 0.0})
    telegram = settings.telegram.model_copy(update={"poll_timeout_seconds": 1})
    return settings.model_copy(
        update={
            "backoff": backoff,
            "telegram": telegram,
            "llm": settings.llm.model_copy(update={"retry_budget_seconds": 2.0, **llm}),
        }
    )


@asynccontextmanager
async def running(settings: Settings, mcp_servers: dict[str, Any] | None = None) -> AsyncIterator[AssistantSystem]:
    """The whole system in this process, stopped (and checked to stop cleanly) afterwards."""
    system = AssistantSystem(settings, mcp_servers or {}, mode="telegram")
    task = asyncio.create_task(system.run(install_signal_handlers=False), name="assistant")
    try:
        started = asyncio.ensure_future(system.started.wait())
        await asyncio.wait([started, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        assert system.started.is_set(), "the system did not start"
        if mcp_servers:  # they start once the gateway serves: let the tests find their actors
            await asyncio.wait_for(system.tools_started.wait(), 30)
        yield system
    finally:
        system.request_stop()
        exit_code = await asyncio.wait_for(task, 30)
        assert exit_code == 0


class AssistantProcess:
    """`python main.py` as a real subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = args
        """Arguments after `main.py` (`--role worker`, say)."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "main.py", *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def ensure_dead(self) -> None:
        """Kill the process if a failed test left it running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
