"""Built-in tools beside MCP's: one toolbox per turn, bound to the turn's context."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from llm import EmptyToolbox, ReplyTarget, ToolResult, ToolSpec
from tools import BuiltinTool, ToolContext, ToolInputError, Toolkit, text_argument
from tools.builtin import TurnToolbox

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 10, 13, 5, tzinfo=UTC)


def context(user_id: int | None = 7, conversation_id: str = "42") -> ToolContext:
    return ToolContext(user_id, conversation_id, ReplyTarget(42), BERLIN, NOW, update_id=1001)


class WhoAmI:
    """Answers with the context it was called with."""

    spec = ToolSpec("whoami", "Who is speaking", {"type": "object", "properties": {}})

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult(f"user {context.user_id} in {context.conversation_id} at {context.local_now:%H:%M}")


class Shout:
    """Upper-cases its `text` argument (at most 10 characters)."""

    spec = ToolSpec("shout", "Shout", {"type": "object", "properties": {"text": {"type": "string"}}})

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult(text_argument(arguments, "text", max_chars=10).upper())


class Broken:
    spec = ToolSpec("broken", "Always fails", {"type": "object", "properties": {}})

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        raise RuntimeError("bug")


class Slow:
    spec = ToolSpec("slow", "Never answers", {"type": "object", "properties": {}})

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class FakeMcp:
    """An MCP-like toolbox with one `srv__echo` tool."""

    def __init__(self, names: Sequence[str] = ("srv__echo",)) -> None:
        self.names = names
        self.calls: list[str] = []

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec(name, "echo", {"type": "object"}) for name in self.names]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        self.calls.append(name)
        return ToolResult(f"mcp {name}")


async def test_a_turn_sees_built_in_tools_first_then_the_mcp_tools() -> None:
    toolbox = Toolkit(FakeMcp(), [WhoAmI(), Shout()]).for_turn(context())
    assert [spec.name for spec in toolbox.specs()] == ["shout", "whoami", "srv__echo"]


async def test_a_built_in_tool_acts_for_the_turns_user_and_no_other() -> None:
    toolkit = Toolkit(EmptyToolbox(), [WhoAmI()])
    first = toolkit.for_turn(context(user_id=7, conversation_id="a"))
    second = toolkit.for_turn(context(user_id=8, conversation_id="b"))
    # Arguments cannot smuggle another user in: the context alone says who speaks.
    results = await asyncio.gather(first.call("whoami", {"user_id": 8}), second.call("whoami", {}))
    assert [result.content for result in results] == ["user 7 in a at 14:05", "user 8 in b at 14:05"]


async def test_calls_to_other_names_go_to_the_mcp_toolbox() -> None:
    mcp = FakeMcp()
    toolbox = Toolkit(mcp, [WhoAmI()]).for_turn(context())
    assert (await toolbox.call("srv__echo", {})).content == "mcp srv__echo"
    assert mcp.calls == ["srv__echo"]


async def test_bad_input_is_an_error_result_the_model_can_act_on() -> None:
    toolbox = Toolkit(EmptyToolbox(), [Shout()]).for_turn(context())
    missing = await toolbox.call("shout", {})
    wrong_type = await toolbox.call("shout", {"text": 3})
    empty = await toolbox.call("shout", {"text": "   "})
    too_long = await toolbox.call("shout", {"text": "x" * 11})
    assert all(result.is_error for result in (missing, wrong_type, empty, too_long))
    assert "'text' is missing" in missing.content
    assert "must be a string, not int" in wrong_type.content
    assert "'text' is empty" in empty.content
    assert "11 characters long; at most 10" in too_long.content
    assert (await toolbox.call("shout", {"text": " hi "})).content == "HI"


async def test_a_failing_built_in_tool_is_an_error_result_not_an_exception() -> None:
    toolbox = Toolkit(EmptyToolbox(), [Broken()]).for_turn(context())
    result = await toolbox.call("broken", {})
    assert result.is_error
    assert "failed unexpectedly" in result.content
    assert "bug" not in result.content


async def test_cancelling_a_turn_cancels_its_built_in_tool_call() -> None:
    slow = Slow()
    toolbox = Toolkit(EmptyToolbox(), [slow]).for_turn(context())
    task = asyncio.create_task(toolbox.call("slow", {}))
    await slow.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_mcp_tool_named_like_a_built_in_one_is_hidden() -> None:
    mcp = FakeMcp(names=("whoami", "srv__echo"))
    toolbox = Toolkit(mcp, [WhoAmI()]).for_turn(context())
    assert [spec.name for spec in toolbox.specs()] == ["whoami", "srv__echo"]
    assert (await toolbox.call("whoami", {})).content.startswith("user 7")
    assert mcp.calls == []


@pytest.mark.parametrize("name", ["my__tool", "", "has space", "x" * 65])
def test_a_built_in_tool_name_must_be_valid_and_without_the_mcp_separator(name: str) -> None:
    class Named:
        spec = ToolSpec(name, "", {"type": "object"})

        async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
            return ToolResult("")

    with pytest.raises(ValueError, match="built-in tool name"):
        Toolkit(EmptyToolbox(), [Named()])


def test_two_built_in_tools_cannot_share_a_name() -> None:
    with pytest.raises(ValueError, match="two built-in tools"):
        Toolkit(EmptyToolbox(), [WhoAmI(), WhoAmI()])


def test_the_context_keeps_now_in_utc_and_refuses_a_naive_time() -> None:
    plus_two = timezone(timedelta(hours=2))
    made = ToolContext(7, "42", ReplyTarget(42), BERLIN, datetime(2026, 3, 10, 15, 5, tzinfo=plus_two))
    assert made.now == NOW
    assert made.now.tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        ToolContext(7, "42", ReplyTarget(42), BERLIN, datetime(2026, 3, 10, 13, 5))


def test_text_argument_raises_tool_input_error() -> None:
    with pytest.raises(ToolInputError):
        text_argument({}, "fact")
    assert text_argument({"fact": " tea "}, "fact") == "tea"


def test_the_tool_classes_satisfy_the_protocols() -> None:
    tools: list[BuiltinTool] = [WhoAmI(), Shout(), Broken()]
    toolbox: TurnToolbox = Toolkit(EmptyToolbox(), tools).for_turn(context())
    assert len(toolbox.specs()) == 3


def module_level_imports(path: Path) -> set[str]:
    """What a module imports when it is imported (not in functions, not for type checking only)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_importing_the_built_in_tools_does_not_import_the_mcp_sdk() -> None:
    # The MCP SDK takes seconds to import; a system without MCP servers never needs it.
    heavy = {"mcp", "tools.connection", "tools.check", "tools.toolbox", "tools._transport"}
    for module in ("__init__.py", "builtin.py", "_names.py"):
        imported = module_level_imports(ROOT / "tools" / module)
        assert not {name for name in imported if name.split(".")[0] == "mcp" or name in heavy}, module
