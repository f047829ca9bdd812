"""The toolbox the turn loop calls: the MCP client side (a connection per configured server) and the
built-in tools (`tools.builtin`: `ToolContext`, `BuiltinTool`, `Toolkit`).

`actors/` runs one supervised actor per `McpConnection`; nothing here imports `actors/`. The MCP
names are loaded on first use, so that the built-in tools do not import the MCP SDK (slow to import,
and unused without MCP servers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tools._names import MAX_NAME_LENGTH, NAME_PATTERN, assign_names, sanitise
from tools.builtin import BuiltinTool, ToolContext, ToolInputError, Toolkit, TurnToolbox, text_argument

if TYPE_CHECKING:
    from tools.check import ServerCheck, check_servers
    from tools.connection import McpConnection, McpTool, describe_failure
    from tools.toolbox import McpToolbox, ToolSource

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "BuiltinTool",
    "McpConnection",
    "McpTool",
    "McpToolbox",
    "ServerCheck",
    "ToolContext",
    "ToolInputError",
    "ToolSource",
    "Toolkit",
    "TurnToolbox",
    "assign_names",
    "check_servers",
    "describe_failure",
    "sanitise",
    "text_argument",
]

_LAZY = {
    "ServerCheck": "tools.check",
    "check_servers": "tools.check",
    "McpConnection": "tools.connection",
    "McpTool": "tools.connection",
    "describe_failure": "tools.connection",
    "McpToolbox": "tools.toolbox",
    "ToolSource": "tools.toolbox",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
