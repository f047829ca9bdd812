"""The MCP servers file: the shipped file, interpolation, and one readable line per mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from conf.mcp import McpServerSettings, McpToolFilter, load_mcp_servers
from conf.settings import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "mcp.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mcp.yml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_mcp_servers(write(tmp_path, text), env or {}, include_disabled=True)
    return str(caught.value)


def test_the_shipped_file_enables_no_server_and_documents_five() -> None:
    assert load_mcp_servers(SHIPPED, env={}) == {}
    servers = load_mcp_servers(SHIPPED, env={"TAVILY_API_KEY": "tvly-s3cret"}, include_disabled=True)
    assert list(servers) == ["fetch", "search", "web", "email", "memory"]
    assert not any(server.enabled for server in servers.values())
    assert servers["fetch"].args == ("-m", "mcp_server_fetch")
    assert servers["web"].kind == "streamable-http"
    assert servers["web"].headers == {"Authorization": "Bearer tvly-s3cret"}
    assert servers["memory"].env["MEMORY_FILE_PATH"].startswith("/")


def test_the_shipped_email_server_may_only_send() -> None:
    email = load_mcp_servers(SHIPPED, env={"EMAIL_PASSWORD": "pw"}, include_disabled=True)["email"]
    assert email.command == "mcp-email-server"
    assert email.env["MCP_EMAIL_SERVER_PASSWORD"] == "pw"
    # The server's 21 tools as version 1.13.3 lists them: only sending and the account list pass.
    listed = [
        "list_available_accounts", "list_email_tags", "list_emails_metadata", "get_emails_content",
        "list_allowed_recipients", "list_allowed_senders", "send_email", "forward_email", "save_to_mailbox",
        "save_draft", "delete_emails", "set_email_flags", "set_email_tags", "mark_emails_as_read", "move_emails",
        "archive_emails", "list_mailboxes", "create_mailbox", "get_attachment_content", "download_attachment",
        "email_command",
    ]  # fmt: skip
    assert [tool for tool in listed if email.tools.allows(tool)] == ["list_available_accounts", "send_email"]


def test_enabling_a_shipped_server_is_one_line(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    for name in ("fetch", "search", "web", "email", "memory"):
        head, block = text.split(f"\n  {name}:", 1)
        edited = f"{head}\n  {name}:{block.replace('enabled: false', 'enabled: true', 1)}"
        assert sum(a != b for a, b in zip(text.splitlines(), edited.splitlines(), strict=True)) == 1
        assert list(load_mcp_servers(write(tmp_path, edited), env={})) == [name]


def test_http_servers_read_headers_from_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "servers:\n"
        "  search:\n"
        "    url: ${SEARCH_URL:-http://127.0.0.1:9/mcp}\n"
        '    headers: {Authorization: "Bearer ${SEARCH_TOKEN}"}\n'
        "    timeout: 5\n",
    )
    servers = load_mcp_servers(path, env={"SEARCH_TOKEN": "abc"})
    assert servers["search"] == McpServerSettings(
        url="http://127.0.0.1:9/mcp", headers={"Authorization": "Bearer abc"}, timeout=5
    )
    assert servers["search"].kind == "streamable-http"


def test_disabled_servers_are_left_out_unless_asked_for(tmp_path: Path) -> None:
    path = write(tmp_path, "servers:\n  a: {command: x}\n  b: {command: y, enabled: '${B_ON:-false}'}\n")
    assert list(load_mcp_servers(path, env={})) == ["a"]
    assert list(load_mcp_servers(path, env={}, include_disabled=True)) == ["a", "b"]
    assert list(load_mcp_servers(path, env={"B_ON": "true"})) == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "servers:\n  search:\n    url: http://x/mcp\n    transport: websocket\n",
            "mcp.yml: servers.search.transport: 'websocket' is not one of streamable-http, sse",
        ),
        (
            "servers:\n  search: {url: http://x, command: python}\n",
            "mcp.yml: servers.search: give exactly one of command (a stdio server) or url (an HTTP server)",
        ),
        (
            "servers:\n  search: {}\n",
            "mcp.yml: servers.search: give exactly one of command (a stdio server) or url (an HTTP server)",
        ),
        ("servers:\n  s: {url: ftp://x}\n", "mcp.yml: servers.s.url: 'ftp://x' is not an http(s) URL"),
        (
            "servers:\n  s: {url: http://x, args: [a]}\n",
            "mcp.yml: servers.s.args: does not apply to an HTTP server (url)",
        ),
        (
            "servers:\n  s: {command: x, headers: {A: b}}\n",
            "mcp.yml: servers.s.headers: does not apply to a stdio server (command)",
        ),
        (
            "servers:\n  s: {command: x, tmeout: 3}\n",
            "mcp.yml: servers.s.tmeout: unknown setting (not a key of servers.s; a typo?)",
        ),
        ("servers:\n  s: {command: x, timeout: 0}\n", "mcp.yml: servers.s.timeout: 0: Input should be greater than 0"),
        (
            "servers:\n  s: {command: x, tools: {inclde: [a]}}\n",
            "mcp.yml: servers.s.tools.inclde: unknown setting (not a key of servers.s.tools; a typo?)",
        ),
        ("servers:\n  s: python\n", "mcp.yml: servers.s: must be a mapping with command or url, not str"),
        ("servers: [a]\n", "mcp.yml: servers: must be a mapping of named servers, not list"),
        ("server:\n  s: {command: x}\n", "mcp.yml: server: unknown setting (the file's only key is 'servers')"),
    ],
)
def test_a_mistake_names_the_server_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(tmp_path, text) == expected


def test_a_value_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    text = "servers:\n  search:\n    url: http://x\n    transport: ${SEARCH_TRANSPORT}\n"
    assert error_of(tmp_path, text, {"SEARCH_TRANSPORT": "ws"}) == (
        "mcp.yml: servers.search.transport (from SEARCH_TRANSPORT): 'ws' is not one of streamable-http, sse"
    )


def test_an_error_never_echoes_header_values(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, "servers:\n  s: {url: http://x, command: y, headers: {Authorization: Bearer s3cret}}\n"
    )
    assert "s3cret" not in message


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    assert "is not valid YAML at line 3" in error_of(tmp_path, "servers:\n  s: {command: [\n")


def test_a_missing_default_file_means_no_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with capture_logs() as logs:
        assert load_mcp_servers(env={}) == {}
    assert logs == [{"event": "mcp_config_missing", "log_level": "info", "path": "conf/mcp.yml", "servers": 0}]


def test_a_missing_configured_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mcp_servers(env={"MCP_CONFIG": str(tmp_path / "nope.yml")})


def test_an_empty_file_means_no_servers(tmp_path: Path) -> None:
    assert load_mcp_servers(write(tmp_path, "# nothing yet\n"), env={}) == {}
    assert load_mcp_servers(write(tmp_path, "servers:\n"), env={}) == {}


def test_tool_filters_take_names_and_patterns() -> None:
    only = McpToolFilter(include=("web_*", "fetch"), exclude=("web_admin",))
    assert only.allows("web_search")
    assert only.allows("fetch")
    assert not only.allows("web_admin")
    assert not only.allows("delete")
    assert McpToolFilter().allows("anything")
    assert not McpToolFilter(exclude=("*",)).allows("anything")


def test_numbers_in_args_and_env_become_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "servers:\n  s: {command: x, args: [--port, 8080], env: {N: 3}}\n")
    server = load_mcp_servers(path, env={})["s"]
    assert server.args == ("--port", "8080")
    assert server.env == {"N": "3"}


def test_main_exits_2_naming_the_key_of_a_bad_mcp_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "servers:\n  search:\n    url: http://x\n    transport: websocket\n")
    done = subprocess.run(
        [sys.executable, "main.py", "--check"],
        cwd=ROOT,
        env={"MCP_CONFIG": str(bad), "TELEGRAM_BOT_TOKEN": "123:abc", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "servers.search.transport: 'websocket' is not one of streamable-http, sse" in done.stderr
    assert "Traceback" not in done.stderr
