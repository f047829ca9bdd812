"""The MCP servers file (`conf/mcp.yml`, or `MCP_CONFIG`) loaded into typed, immutable settings.

The file is a map of named servers under `servers:` (see docs/contract.md, "MCP servers file").
Each server is either a stdio command (`command`, `args`, `env`, `cwd`) or an HTTP endpoint
(`url`, `transport`, `headers`); values may read the environment as `${NAME}` / `${NAME:-default}`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from pydantic import Field, ValidationError, field_validator, model_validator

from conf._interpolate import interpolate
from conf.settings import (
    CaseInsensitive,
    ConfigError,
    OptionalHttpUrl,
    SettingsModel,
    describe_validation_error,
    load_yaml_file,
)

__all__ = [
    "DEFAULT_MCP_CONFIG_PATH",
    "McpServerSettings",
    "McpToolFilter",
    "load_mcp_servers",
    "mcp_secrets",
]

log = structlog.get_logger(__name__)

DEFAULT_MCP_CONFIG_PATH = "conf/mcp.yml"

_STDIO_KEYS = ("command", "args", "env", "cwd")
_HTTP_KEYS = ("url", "transport", "headers")


class McpToolFilter(SettingsModel):
    """Which of a server's tools the model sees. Entries are names or shell-style patterns (`web_*`).

    An empty `include` means every tool; `exclude` wins over `include`.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def allows(self, tool: str) -> bool:
        """True if the tool named `tool` passes the filter."""
        included = not self.include or any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.include)
        return included and not any(fnmatch.fnmatchcase(tool, pattern) for pattern in self.exclude)


class McpServerSettings(SettingsModel):
    """One MCP server: exactly one of `command` (stdio) or `url` (streamable HTTP or SSE)."""

    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = ""
    url: OptionalHttpUrl = ""
    transport: Annotated[Literal["streamable-http", "sse"], CaseInsensitive] = "streamable-http"
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    timeout: float = Field(30.0, gt=0, le=3600)
    tools: McpToolFilter = McpToolFilter()

    @field_validator("args", mode="before")
    @classmethod
    def _args_are_strings(cls, raw: object) -> object:
        # YAML reads `args: [--port, 8080]` with an int; a command line is strings.
        if isinstance(raw, list):
            return [str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item for item in raw]
        return raw

    @field_validator("env", "headers", mode="before")
    @classmethod
    def _values_are_strings(cls, raw: object) -> object:
        if raw is None:
            return {}
        if isinstance(raw, Mapping):
            return {
                str(key): str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
                for key, value in raw.items()
            }
        return raw

    @model_validator(mode="after")
    def _one_kind(self) -> McpServerSettings:
        if bool(self.command) == bool(self.url):
            raise ValueError("give exactly one of command (a stdio server) or url (an HTTP server)")
        wrong = _HTTP_KEYS if self.command else _STDIO_KEYS
        for key in wrong:
            if key in self.model_fields_set and getattr(self, key):
                kind = "a stdio server (command)" if self.command else "an HTTP server (url)"
                raise ValueError(f"{key} does not apply to {kind}")
        return self

    @property
    def kind(self) -> Literal["stdio", "streamable-http", "sse"]:
        """How the client reaches the server."""
        return "stdio" if self.command else self.transport

    def describe(self) -> str:
        """A short, secret-free description for logs: the command or the URL without its query."""
        if self.command:
            return " ".join((self.command, *self.args))
        return self.url.split("?", 1)[0]


def load_mcp_servers(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    include_disabled: bool = False,
    missing_ok: bool | None = None,
) -> dict[str, McpServerSettings]:
    """Load and validate the MCP servers file; raise ConfigError naming the server and key.

    `path` defaults to `MCP_CONFIG`, then `conf/mcp.yml`. Only enabled servers are returned unless
    `include_disabled`. A missing file is an error, except at the default path (`missing_ok`
    defaults to "the path is the default one"): then there are no servers and an info line says so.
    Disabled servers are validated too, so a mistake is found before someone enables one.
    """
    env = os.environ if env is None else env
    path = path or env.get("MCP_CONFIG") or DEFAULT_MCP_CONFIG_PATH
    if missing_ok is None:
        missing_ok = str(path) == DEFAULT_MCP_CONFIG_PATH
    label = Path(path).name
    if missing_ok and not Path(path).exists():
        log.info("mcp_config_missing", path=str(path), servers=0)
        return {}
    raw = load_yaml_file(path, "MCP_CONFIG")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(label, f"must hold a mapping with a 'servers' key, not {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key != "servers")
    if unknown:
        raise ConfigError(f"{label}: {unknown[0]}", "unknown setting (the file's only key is 'servers')")
    servers = raw.get("servers")
    if servers is None:
        return {}
    if not isinstance(servers, Mapping):
        raise ConfigError(f"{label}: servers", f"must be a mapping of named servers, not {type(servers).__name__}")
    loaded: dict[str, McpServerSettings] = {}
    for key, body in servers.items():
        name = str(key)
        if not name.strip():
            raise ConfigError(f"{label}: servers", "a server name must not be empty")
        if not isinstance(body, Mapping):
            problem = f"must be a mapping with command or url, not {type(body).__name__}"
            raise ConfigError(f"{label}: servers.{name}", problem)
        loaded[name] = _validate_server(label, name, body, env)
    return {name: server for name, server in loaded.items() if include_disabled or server.enabled}


def _validate_server(label: str, name: str, body: Mapping[str, Any], env: Mapping[str, str]) -> McpServerSettings:
    prefix: tuple[str | int, ...] = ("servers", name)
    kinds = [key for key in ("command", "url") if body.get(key)]
    if len(kinds) == 1:
        kind = "a stdio server (command)" if kinds[0] == "command" else "an HTTP server (url)"
        for key in _HTTP_KEYS if kinds[0] == "command" else _STDIO_KEYS:
            if key in body:
                raise ConfigError(f"{label}: servers.{name}.{key}", f"does not apply to {kind}")
    sources: dict[tuple[str | int, ...], str] = {}
    data = interpolate(dict(body), env, prefix, sources)
    try:
        return McpServerSettings.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc, sources, prefix, label) from None


def _describe(
    exc: ValidationError, sources: Mapping[tuple[str | int, ...], str], prefix: tuple[str | int, ...], label: str
) -> ConfigError:
    error = exc.errors()[0]
    if not error["loc"]:
        # A whole-server rule: name the server, never echo its values (headers may hold tokens).
        setting = ".".join(str(part) for part in prefix)
        return ConfigError(f"{label}: {setting}", str(error["msg"]).removeprefix("Value error, "))
    if error["type"] == "literal_error":
        loc = (*prefix, *error["loc"])
        setting = ".".join(str(part) for part in loc)
        expected = ", ".join(str(option) for option in (error.get("ctx") or {}).get("expected_options", ()))
        if not expected:
            expected = str((error.get("ctx") or {}).get("expected", "")).replace("'", "").replace(" or ", ", ")
        variable = sources.get(loc)
        where = f"{setting} (from {variable})" if variable else setting
        return ConfigError(f"{label}: {where}", f"{error['input']!r} is not one of {expected}")
    described = describe_validation_error(exc, sources, prefix)
    return ConfigError(f"{label}: {described.setting}", described.problem)


def mcp_secrets(servers: Mapping[str, McpServerSettings]) -> list[str]:
    """Every configured header and environment value of the servers: each may be a key (an
    `Authorization` header, an `API_KEY` variable), so the logs redact them all (the redactor
    ignores values too short to be secrets)."""
    return [value for server in servers.values() for value in (*server.headers.values(), *server.env.values())]
