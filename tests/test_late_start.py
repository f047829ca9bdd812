"""What starts once the gateway serves: MCP servers (their tools appearing as they connect) and the
model SDK's import, never before the first poll, and not at all in a process that runs no turns; and
what start-up does not load at all."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from actors.supervisor import Supervisor
from app.late_start import DeferredToolbox, LateStart
from conf.settings import BackoffSettings, LLMSettings
from llm import ToolResult, ToolSpec
from ops.backoff import Backoff
from tests.fakes.telegram_server import FakeTelegramServer
from tests.mcp_helpers import stdio_settings

ROOT = Path(__file__).resolve().parent.parent
FAST = Backoff(BackoffSettings(initial_seconds=0.05, max_seconds=0.2, multiplier=2, jitter_seconds=0))


class OneTool:
    """A toolbox with one tool that answers with its arguments."""

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec(name="box__echo", description="echo", parameters={"type": "object"})]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult(f"{name}: {dict(arguments)}")


@asynccontextmanager
async def root() -> AsyncIterator[Supervisor]:
    supervisor = Supervisor("root", backoff=FAST, max_restarts=5, window_seconds=60)
    try:
        yield supervisor
    finally:
        await supervisor.stop(5)


async def test_a_deferred_toolbox_has_no_tools_until_one_is_attached() -> None:
    toolbox = DeferredToolbox()
    assert list(toolbox.specs()) == []
    early = await toolbox.call("box__echo", {"x": 1})
    assert early.is_error
    toolbox.attach(OneTool())
    assert [spec.name for spec in toolbox.specs()] == ["box__echo"]
    assert (await toolbox.call("box__echo", {"x": 1})).content == "box__echo: {'x': 1}"


async def test_mcp_servers_start_only_once_the_gateway_serves_and_their_tools_appear() -> None:
    serving = asyncio.Event()
    async with root() as supervisor:
        late = LateStart(LLMSettings(), {"fake": stdio_settings()}, FAST, supervisor, grace_seconds=60)
        task = asyncio.create_task(late.run(serving), name="late-start")
        await asyncio.sleep(0.05)
        assert not late.done.is_set()
        assert late.actors == {}
        assert list(late.toolbox.specs()) == []
        serving.set()
        await asyncio.wait_for(late.done.wait(), 30)
        connection = late.actors["fake"].connection
        await asyncio.wait_for(connection.wait_until(lambda c: bool(c.tools())), 20)
        assert any(spec.name.startswith("fake__") for spec in late.toolbox.specs())
        await task


async def test_without_a_first_poll_the_servers_start_after_the_grace_period() -> None:
    async with root() as supervisor:
        late = LateStart(LLMSettings(), {"fake": stdio_settings()}, FAST, supervisor, grace_seconds=0.05)
        await asyncio.wait_for(late.run(asyncio.Event()), 30)
        assert set(late.actors) == {"fake"}
        # Connected before the supervisor stops it (a stop in the middle of the handshake is
        # the connection's own business, tested with it).
        await asyncio.wait_for(late.actors["fake"].connection.wait_until(lambda c: bool(c.tools())), 20)


async def test_a_process_that_runs_no_turns_starts_nothing() -> None:
    async with root() as supervisor:
        late = LateStart(None, {}, FAST, supervisor)
        await asyncio.wait_for(late.run(None), 5)
        assert late.done.is_set()
        assert late.actors == {}
        assert list(late.toolbox.specs()) == []


def python_output(code: str) -> str:
    """What `code` prints, run by a fresh interpreter in the project's root; it must succeed."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_start_up_loads_no_model_http_library_turn_loop_or_markdown_converter() -> None:
    # What the system imports and builds before its first poll (the file source included, whose
    # download client is made on the first download): the model SDK's HTTP library, the turn loop
    # of the conversation actors and the Markdown converter all load later, when first used; PTB's
    # and httpx's optional extras (Passport's cryptography, httpx's CLI) not at all.
    code = (
        "import sys\n"
        "from app.imports import import_telegram_library\n"
        "import_telegram_library()\n"
        "import app.run, app.system, app.media, channels.telegram.gateway\n"
        "from channels.telegram.media import TelegramFiles\n"
        "TelegramFiles(None, None)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = python_output(code)
    loaded = set(out.split())
    assert {"app.system", "channels.telegram.media", "aiohttp", "telegram"} <= loaded
    later = {"httpx2", "httpcore", "anyio", "openai", "anthropic", "actors.conversation", "llm.summary"}
    assert not loaded & (later | {"chatgpt_md_converter", "cryptography", "click", "httpx._main"})


def test_the_optional_extras_hidden_from_ptb_stay_importable() -> None:
    code = (
        "import sys\n"
        "from app.imports import import_telegram_library\n"
        "import_telegram_library()\n"
        "from telegram._passport.credentials import CRYPTO_INSTALLED\n"
        "import httpx, cryptography.hazmat\n"
        "print(CRYPTO_INSTALLED, httpx.main.__module__, 'cryptography.hazmat' in sys.modules)\n"
    )
    out = python_output(code)
    assert out.split() == ["False", "httpx", "True"]


def test_a_plain_http_bot_api_server_loads_no_ca_bundle(tg: FakeTelegramServer) -> None:
    # A local Bot API server over plain HTTP (as the fake): the Bot API client's sessions need no
    # TLS context, so certifi's bundle is not read before the first poll (nor after).
    code = (
        "import asyncio, sys\n"
        "from channels.telegram.client import TelegramClient\n"
        "from conf.settings import TelegramSettings\n"
        "async def main():\n"
        f"    settings = TelegramSettings(token={tg.token!r}, api_base_url={tg.base_url!r})\n"
        "    async with TelegramClient(settings, pool_size=1, read_timeout=5.0) as client:\n"
        "        await client.bot.initialize()\n"
        "        await client.bot.delete_webhook()\n"
        "asyncio.run(main())\n"
        "print('certifi' in sys.modules)\n"
    )
    out = python_output(code)
    assert out.split() == ["False"]
    assert tg.calls.count("getMe") == 1


def test_the_malloc_tuning_finds_glibc_without_a_subprocess() -> None:
    # ctypes.util.find_library runs `ldconfig -p` in a subprocess (~10 ms each, three times at
    # start): the C library's functions are looked up among the process's own symbols instead.
    code = (
        "import sys\n"
        "import ops.memory\n"
        "ops.memory.limit_malloc_arenas()\n"
        "ops.memory.return_large_blocks()\n"
        "ops.memory.release_free_memory()\n"
        "print(ops.memory._MALLOC_TRIM is not None, 'ctypes.util' in sys.modules, 'subprocess' in sys.modules)\n"
    )
    out = python_output(code)
    assert out.split() == ["True", "False", "False"]  # glibc (this test's Linux) has malloc_trim


class ServingSystem:
    """What `_serve` reads of the system: `started`, the gateway's first poll, and `run`."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gateway = SimpleNamespace(polling=asyncio.Event())
        self.stop = asyncio.Event()

    async def run(self) -> int:
        self.started.set()
        await self.stop.wait()
        return 0


async def test_garbage_collection_resumes_once_the_system_serves() -> None:
    from app.run import _serve

    system = ServingSystem()
    gc.disable()  # as `run` leaves it for start-up
    try:
        task = asyncio.create_task(_serve(system))  # type: ignore[arg-type]
        await system.started.wait()
        await asyncio.sleep(0.01)
        assert not gc.isenabled()  # started, but no first poll yet
        system.gateway.polling.set()
        async with asyncio.timeout(5):
            while not gc.isenabled():
                await asyncio.sleep(0.001)
        system.stop.set()
        assert await task == 0
    finally:
        gc.enable()
