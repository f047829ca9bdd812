"""Built-in tools: the assistant's own tools (memory, reminders), offered beside the MCP servers' tools.

A built-in tool is a `BuiltinTool`: a `spec` (what the model reads) and `call(arguments, context)`.
The `ToolContext` says who the turn acts for, where and when; the conversation actor makes one per
turn from the message it answers, and `Toolkit.for_turn(context)` binds it into the `Toolbox` that
turn calls. A tool never takes a user id from the model's arguments, only from its context, so it
cannot act for another user (in a group, the turn acts for the user who spoke).

Names: a built-in tool's name never contains `__`; an MCP tool's always does (`<server>__<tool>`),
so the two never meet. Wrong input from the model is a `ToolInputError` raised by the tool, which
the toolbox turns into an error result the model can act on; any other failure of a built-in tool
is logged and answered with a short error result, never raised into the turn.

    class Echo:
        spec = ToolSpec("echo", "Repeat a text.", {"type": "object", "properties": {"text": {"type": "string"}}})

        async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
            return ToolResult(text_argument(arguments, "text"))

    toolkit = Toolkit(mcp_toolbox, [Echo()])
    toolbox = toolkit.for_turn(ToolContext(user_id=7, conversation_id="42", target=ReplyTarget(42), ...))
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from llm.base import Toolbox, ToolResult, ToolSpec
from llm.records import ReplyTarget
from tools._names import NAME_PATTERN

__all__ = [
    "BuiltinTool",
    "ToolContext",
    "ToolInputError",
    "Toolkit",
    "TurnToolbox",
    "text_argument",
]

log = structlog.get_logger(__name__)

_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who one turn acts for, where, and when: everything a built-in tool may act on.

    Made by the conversation actor for each turn, from the message it answers; never from what the
    model writes.
    """

    user_id: int | None
    """The Telegram user who spoke (in a group: who wrote the message); None where no user is known
    (the console). Per-user tools refuse to act without one."""
    conversation_id: str
    target: ReplyTarget
    """Where this conversation's answers go (a reminder made in this turn is sent there)."""
    zone: ZoneInfo
    """The user's time zone (their `/timezone`, else the `TIMEZONE` setting)."""
    now: datetime
    """When the turn started: an aware UTC datetime from the injected clock. It is the moment the
    model's instructions state, so "in an hour" means the same to the model and to the tools."""
    update_id: int | None = None
    """The Telegram update being answered, where there is one (a saved fact records it as its source)."""

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError(f"ToolContext.now must be an aware datetime, not {self.now!r}")
        object.__setattr__(self, "now", self.now.astimezone(UTC))

    @property
    def local_now(self) -> datetime:
        """`now` in the user's zone."""
        return self.now.astimezone(self.zone)


class ToolInputError(Exception):
    """The model called a built-in tool with arguments it cannot act on.

    The message is written for the model (what was wrong and what to do instead): the toolbox returns
    it as an error result, so the model can correct the call or tell the user.
    """


class BuiltinTool(Protocol):
    """A tool the assistant has itself. `spec.name` matches `^[a-zA-Z0-9_-]{1,64}$` without `__`."""

    @property
    def spec(self) -> ToolSpec:
        """What the model reads: name, description, JSON Schema of the arguments."""
        ...

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Act for `context` (and only for it). Raise ToolInputError for arguments that cannot be
        acted on; report other failures as `is_error` results. Cancellation propagates."""
        ...


def text_argument(arguments: Mapping[str, Any], key: str, *, max_chars: int | None = None) -> str:
    """The string argument `key`, stripped; ToolInputError if it is missing, not a string, empty, or
    (with `max_chars`) longer than that."""
    value = arguments.get(key)
    if value is None:
        raise ToolInputError(f"The argument {key!r} is missing: call the tool again with it.")
    if not isinstance(value, str):
        raise ToolInputError(f"The argument {key!r} must be a string, not {type(value).__name__}.")
    text = value.strip()
    if not text:
        raise ToolInputError(f"The argument {key!r} is empty: call the tool again with some text.")
    if max_chars is not None and len(text) > max_chars:
        raise ToolInputError(
            f"The argument {key!r} is {len(text)} characters long; at most {max_chars} are allowed. Shorten it."
        )
    return text


class Toolkit:
    """The MCP toolbox and the built-in tools; `for_turn(context)` is the `Toolbox` of one turn.

    Shared by every conversation. Raises ValueError at construction for a built-in tool whose name is
    invalid, contains `__`, or is taken twice.
    """

    def __init__(self, mcp: Toolbox, builtins: Iterable[BuiltinTool] = ()) -> None:
        self.mcp = mcp
        tools: dict[str, BuiltinTool] = {}
        for tool in builtins:
            name = tool.spec.name
            if not NAME_PATTERN.match(name) or _SEPARATOR in name:
                raise ValueError(f"built-in tool name {name!r}: use 1-64 of [a-zA-Z0-9_-], without '__'")
            if name in tools:
                raise ValueError(f"two built-in tools are named {name!r}")
            tools[name] = tool
        self.builtins: Mapping[str, BuiltinTool] = tools

    def for_turn(self, context: ToolContext) -> TurnToolbox:
        """The toolbox one turn calls: the built-in tools bound to `context`, and the MCP tools."""
        return TurnToolbox(self.mcp, self.builtins, context)


class TurnToolbox:
    """`llm.base.Toolbox` for one turn: built-in tools (bound to the turn's context) first, then MCP's.

    An MCP tool whose name equals a built-in's (impossible while MCP names contain `__`) is hidden.
    """

    def __init__(self, mcp: Toolbox, builtins: Mapping[str, BuiltinTool], context: ToolContext) -> None:
        self._mcp = mcp
        self._builtins = builtins
        self.context = context

    def specs(self) -> Sequence[ToolSpec]:
        """The built-in tools (sorted by name), then the MCP tools available now."""
        own = [self._builtins[name].spec for name in sorted(self._builtins)]
        return own + [spec for spec in self._mcp.specs() if spec.name not in self._builtins]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call a built-in tool with the turn's context, or route the call to the MCP toolbox.

        Never raises for a tool's failure: ToolInputError becomes its message as an error result,
        anything else is logged and becomes a short error result. Cancellation propagates.
        """
        tool = self._builtins.get(name)
        if tool is None:
            return await self._mcp.call(name, arguments)
        try:
            return await tool.call(arguments, self.context)
        except ToolInputError as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The turn must go on: the model can tell the user, or try another way.
            log.error("builtin_tool_failed", tool=name, exc_info=exc)
            return ToolResult(f"Error: the tool {name} failed unexpectedly. Try again later.", is_error=True)
