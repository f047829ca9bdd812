"""MCP connections and the toolbox against real stdio servers: the fake MCP server and the
third-party mcp-server-time."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from actors.mcp import McpServerActor
from conf.mcp import McpServerSettings, McpToolFilter
from tests.fakes.mcp_server import PNG_BYTES
from tests.mcp_helpers import FAKE_TOOLS, FAST, running, stdio_settings, until
from tools import McpConnection, McpToolbox

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared() -> AsyncIterator[McpConnection]:
    """One stdio fake server for the tests that leave it as they found it; tools/list in pages of 3."""
    async with running(McpConnection("fake", stdio_settings("--page-size", "3"), FAST)) as connection:
        yield connection


async def test_a_stdio_server_lists_all_pages_and_answers_through_the_toolbox(shared: McpConnection) -> None:
    assert sorted(tool.name for tool in shared.tools()) == FAKE_TOOLS
    toolbox = McpToolbox({"fake": shared})
    specs = {spec.name: spec for spec in toolbox.specs()}
    assert sorted(specs) == [f"fake__{name}" for name in FAKE_TOOLS]
    assert specs["fake__add"].parameters["type"] == "object"
    assert set(specs["fake__add"].parameters["properties"]) == {"a", "b"}
    assert specs["fake__echo"].description == "Return the text unchanged."
    assert (await toolbox.call("fake__echo", {"text": "hello"})).content == "hello"
    assert (await toolbox.call("fake__add", {"a": 2, "b": 40})).content == "42"


async def test_a_failing_tool_is_an_error_result(shared: McpConnection) -> None:
    result = await shared.call_tool("fail", {"message": "no such city"})
    assert result.is_error
    assert "no such city" in result.content


async def test_bad_arguments_are_an_error_result(shared: McpConnection) -> None:
    result = await shared.call_tool("add", {"a": "one"})
    assert result.is_error


async def test_images_and_embedded_resources_are_converted(shared: McpConnection) -> None:
    image = await shared.call_tool("image", {})
    assert not image.is_error
    assert [img.mime_type for img in image.images] == ["image/png"]
    assert image.images[0].data_base64 == base64.b64encode(PNG_BYTES).decode()
    report = await shared.call_tool("report", {})
    assert report.content == "report follows\n[resource memo://1]\nthe memo body"


async def test_a_call_beyond_the_timeout_is_an_error_and_the_server_stays_usable() -> None:
    async with running(McpConnection("quick", stdio_settings(timeout=0.3), FAST)) as connection:
        result = await connection.call_tool("slow", {"seconds": 5})
        assert result.is_error
        assert "did not answer within 0.3 s" in result.content
        assert (await connection.call_tool("echo", {"text": "still here"})).content == "still here"
        assert connection.connects == 1


async def test_an_unknown_tool_is_an_error_result_without_a_call(shared: McpConnection) -> None:
    result = await shared.call_tool("nope", {})
    assert result.is_error
    assert "no tool named 'nope'" in result.content


async def test_tools_list_changed_brings_new_tools_to_the_model(shared: McpConnection) -> None:
    toolbox = McpToolbox({"fake": shared})
    assert (await toolbox.call("fake__grow", {"name": "weather"})).content == "added weather"
    await until(shared, lambda c: any(tool.name == "weather" for tool in c.tools()))
    assert "fake__weather" in [spec.name for spec in toolbox.specs()]
    assert (await toolbox.call("fake__weather", {"text": "sunny"})).content == "weather: sunny"


async def test_the_real_mcp_server_time_over_stdio() -> None:
    settings = McpServerSettings(
        command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"), timeout=10
    )
    async with running(McpConnection("time", settings, FAST)) as connection:
        toolbox = McpToolbox({"time": connection})
        names = [spec.name for spec in toolbox.specs()]
        assert "time__get_current_time" in names
        assert "time__convert_time" in names
        result = await toolbox.call("time__get_current_time", {"timezone": "Europe/Paris"})
        assert not result.is_error
        assert json.loads(result.content)["timezone"] == "Europe/Paris"
        wrong = await toolbox.call("time__get_current_time", {"timezone": "Mars/Olympus"})
        assert wrong.is_error


async def test_the_server_actor_serves_the_toolbox_the_filtered_tools() -> None:
    only = McpToolFilter(include=("e*", "add", "crash"), exclude=("crash",))
    actor = McpServerActor("acted", stdio_settings(tools=only), FAST)
    assert actor.name == "acted"
    task = asyncio.create_task(actor.run())
    try:
        await until(actor.connection, lambda c: c.connected)
        assert sorted(tool.name for tool in actor.connection.tools()) == ["add", "echo"]
        toolbox = McpToolbox({"acted": actor.connection})
        assert [spec.name for spec in toolbox.specs()] == ["acted__add", "acted__echo"]
        assert (await toolbox.call("acted__echo", {"text": "via actor"})).content == "via actor"
        refused = await actor.connection.call_tool("crash", {})
        assert refused.is_error
        assert actor.connection.connected
    finally:
        task.cancel()
        await asyncio.wait([task])
    assert task.cancelled()
