"""The servers of the shipped conf/mcp.yml are real: each one that runs here without a key is started
over stdio and lists its tools through the assistant's own MCP code (the `--check` path)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from conf.mcp import McpServerSettings, load_mcp_servers
from tools import ServerCheck, check_servers

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "mcp.yml"
SERVERS = load_mcp_servers(SHIPPED, env={}, include_disabled=True)

# Why a server is not started here, for the ones that cannot be: a key, an account, the internet.
NOT_STARTED = {
    "web": "Tavily's remote server needs the internet and a TAVILY_API_KEY",
    "email": "mcp-email-server needs a mail account and its password (and its own venv: it requires mcp 1.x)",
}
# Tools each started server must list (after the file's filter), and tools the filter must hide.
EXPECTED = {
    "fetch": ({"fetch"}, set()),
    "search": ({"search", "fetch_content"}, set()),
    "memory": ({"create_entities", "search_nodes", "read_graph"}, {"delete_entities", "delete_relations"}),
}


def test_every_shipped_server_is_either_started_here_or_says_why_not() -> None:
    assert set(SERVERS) == set(EXPECTED) | set(NOT_STARTED)


def test_the_shipped_python_servers_are_pinned_for_the_tests_as_the_file_says() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    )
    told = re.findall(r"pip install ([a-z0-9-]+)==(\S+)", SHIPPED.read_text(encoding="utf-8"))
    assert {"mcp-server-fetch", "duckduckgo-mcp-server"} <= {name for name, _ in told}
    for name, version in told:
        assert pins.get(name) == version, f"conf/mcp.yml says {name}=={version}, requirements-dev.txt {pins.get(name)}"


def _startable(server: McpServerSettings) -> str | None:
    """Why `server` cannot start on this machine, or None."""
    if server.command in {"python", "python3"}:
        return None
    if server.command == "mcp-server-memory":
        if shutil.which("node") is None:
            return "node is not installed"
        if shutil.which(server.command) is None:
            # From the registry the install takes ~30 s here: too slow for the suite to do itself.
            return "mcp-server-memory is not installed (npm install -g @modelcontextprotocol/server-memory@2026.8.31)"
        return None
    if shutil.which(server.command) is None:
        return f"{server.command} is not on PATH (pip install -r requirements-dev.txt installs it)"
    return None


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ServerCheck | str]:
    """Every startable server's check, run concurrently (the servers take seconds each to import);
    for the others, why they cannot start here."""
    outcome: dict[str, ServerCheck | str] = {}
    servers: dict[str, McpServerSettings] = {}
    with pytest.MonkeyPatch.context() as patch:
        # Console scripts of the venv (duckduckgo-mcp-server) are found as in the image, where the
        # venv's bin directory is on PATH.
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        for name in EXPECTED:
            server = SERVERS[name]
            reason = _startable(server)
            if reason is not None:
                outcome[name] = reason
                continue
            env = dict(server.env)
            if "MEMORY_FILE_PATH" in env:  # not the image's /app/data
                env["MEMORY_FILE_PATH"] = str(tmp_path_factory.mktemp("memory") / "memory.jsonl")
            servers[name] = server.model_copy(update={"enabled": True, "env": env})
        for result in asyncio.run(check_servers(servers, timeout=45)):
            outcome[result.name] = result
    return outcome


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_shipped_server_starts_and_lists_its_tools(name: str, started: dict[str, ServerCheck | str]) -> None:
    result = started[name]
    if isinstance(result, str):
        pytest.skip(result)
    assert result.ok, result.reason
    required, hidden = EXPECTED[name]
    assert required <= set(result.tools), result.tools
    assert not hidden & set(result.tools), result.tools
