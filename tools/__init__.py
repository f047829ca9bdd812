"""The MCP client side: a connection per configured server and the toolbox the turn loop calls.

`actors/` runs one supervised actor per `McpConnection`; nothing here imports `actors/`.
"""

from tools._names import MAX_NAME_LENGTH, NAME_PATTERN, assign_names, sanitise
from tools.check import ServerCheck, check_servers
from tools.connection import McpConnection, McpTool, describe_failure
from tools.toolbox import McpToolbox, ToolSource

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_PATTERN",
    "McpConnection",
    "McpTool",
    "McpToolbox",
    "ServerCheck",
    "ToolSource",
    "assign_names",
    "check_servers",
    "describe_failure",
    "sanitise",
]
