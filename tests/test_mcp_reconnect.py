"""MCP connections that lose their server: crashes, kills, servers down at start; HTTP and SSE."""

from __future__ import annotations

import asyncio
import os

import pytest
from structlog.testing import capture_logs

from conf.mcp import McpServerSettings, McpToolFilter
from tests.mcp_helpers import FAKE_TOOLS, FAST, http_server, running, stdio_settings, until
from tools import McpConnection, McpToolbox, check_servers

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_stdio_server_that_crashes_mid_call_is_respawned() -> None:
    connection = McpConnection("fragile", stdio_settings(), FAST)
    async with running(connection):
        first_pid = int((await connection.call_tool("pid", {})).content)
        with capture_logs() as logs:
            crashed = await connection.call_tool("crash", {})
            assert crashed.is_error
            assert "lost during the call" in crashed.content
            await until(connection, lambda c: c.connects == 2 and c.connected)
        second_pid = int((await connection.call_tool("pid", {})).content)
        assert second_pid != first_pid
        assert (await connection.call_tool("echo", {"text": "back"})).content == "back"
        unavailable = [line for line in logs if line["event"] == "mcp_server_unavailable"]
        assert len(unavailable) == 1
        assert unavailable[0]["server"] == "fragile"
        assert unavailable[0]["reason"] == "the server closed the connection"
    # Cancelling run() closed the session, and with it the subprocess.
    with pytest.raises(ProcessLookupError):
        os.kill(second_pid, 0)


async def test_streamable_http_round_trip_and_a_server_killed_mid_call_then_restarted() -> None:
    with http_server() as (process, port):
        settings = McpServerSettings(url=f"http://127.0.0.1:{port}/mcp", timeout=10)
        connection = McpConnection("web", settings, FAST)
        async with running(connection):
            toolbox = McpToolbox({"web": connection})
            assert (await toolbox.call("web__add", {"a": 1, "b": 2})).content == "3"
            in_flight = asyncio.create_task(toolbox.call("web__slow", {"seconds": 30}))
            assert process.stdout is not None
            assert await asyncio.to_thread(process.stdout.readline) == "CALL slow\n"
            process.kill()
            failed = await asyncio.wait_for(in_flight, 5)
            assert failed.is_error
            await until(connection, lambda c: not c.connected)
            assert toolbox.specs() == []
            down = await toolbox.call("web__echo", {"text": "anyone?"})
            assert down.is_error
            with http_server(port) as (_restarted, same_port):
                assert same_port == port
                await until(connection, lambda c: c.connected and c.connects == 2)
                assert (await toolbox.call("web__echo", {"text": "back"})).content == "back"


async def test_a_server_down_at_start_blocks_nothing_and_joins_when_it_comes_up() -> None:
    with http_server() as (process, port):
        process.kill()  # keep the port number, free it
        process.wait()
    late = McpConnection("late", McpServerSettings(url=f"http://127.0.0.1:{port}/mcp", timeout=5), FAST)
    early = McpConnection("early", stdio_settings(), FAST)
    toolbox = McpToolbox({"late": late, "early": early})
    with capture_logs() as logs:
        async with running(late, wait=False), running(early):
            assert {spec.name.split("__")[0] for spec in toolbox.specs()} == {"early"}
            assert (await toolbox.call("early__echo", {"text": "hi"})).content == "hi"
            await until(late, lambda c: c.failures >= 3)
            assert not late.connected
            with http_server(port):
                await until(late, lambda c: c.connected)
                assert "late__echo" in [spec.name for spec in toolbox.specs()]
                assert (await toolbox.call("late__echo", {"text": "made it"})).content == "made it"
                unavailable = [line for line in logs if line["event"] == "mcp_server_unavailable"]
    assert [line["server"] for line in unavailable] == ["late"], "one line per outage, not per retry"
    assert "ConnectError" in unavailable[0]["reason"]


async def test_an_sse_server_round_trip() -> None:
    with http_server(transport="sse") as (_process, port):
        settings = McpServerSettings(url=f"http://127.0.0.1:{port}/sse", transport="sse", timeout=5)
        async with running(McpConnection("events", settings, FAST)) as connection:
            assert (await connection.call_tool("echo", {"text": "over sse"})).content == "over sse"


async def test_check_lists_each_servers_tools_or_the_reason_it_failed() -> None:
    with http_server() as (process, port):
        process.kill()
        process.wait()
    servers = {
        "fake": stdio_settings(tools=McpToolFilter(exclude=("crash",))),
        "gone": McpServerSettings(url=f"http://127.0.0.1:{port}/mcp"),
        "missing": McpServerSettings(command="/nonexistent/mcp-server"),
    }
    fake, gone, missing = await check_servers(servers, timeout=10)
    assert (fake.name, fake.ok) == ("fake", True)
    assert sorted(fake.tools) == [name for name in FAKE_TOOLS if name != "crash"]
    assert (gone.name, gone.ok) == ("gone", False)
    assert "ConnectError" in gone.reason
    assert (missing.name, missing.ok) == ("missing", False)
    assert missing.reason
