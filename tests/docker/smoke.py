"""Container smoke test: build the image, run it against the fake Telegram and LLM servers,
send a message, see the reply, `docker stop` it and check it exits 0 within the grace period.

    .venv/bin/python tests/docker/smoke.py        (or tests/docker/smoke.sh)

Prints "SKIP: <reason>" and exits 0 where no Docker engine runs. Needs no registry of images:
if the official base image is not present locally, it builds a minimal Debian with python3 from
Debian's packages (debootstrap, as root) and imports it as the base. Python dependencies come
from wheels downloaded on the host and served to `docker build` on loopback, so the build needs
no package index; only the build stage's binutils comes from the base's Debian mirror. The
container runs with --network host: the fakes listen on 127.0.0.1.

Prints a table: image size (and how much of it is the base), start-up time (docker run to /healthz 200),
reply time, stop time, memory after one turn.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fakes.llm_server import FakeLLMServer  # noqa: E402 - after the path set-up above
from tests.fakes.telegram_server import FakeTelegramServer  # noqa: E402

IMAGE = "assistant-smoke:latest"
# The tag names the recipe: a base built by an older recipe (with docs and locales) is not reused.
OFFLINE_BASE = "assistant-smoke-base:bookworm-slim"
# What Debian's slim images leave out of every package (dpkg path-exclude), and apt's downloads:
# none of it is read at run time, and the official python:3.11-slim has none of it either.
BASE_JUNK = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "var/cache/apt/archives", "var/lib/apt/lists",
)  # fmt: skip
OFFICIAL_BASE = "python:3.11-slim"
CONTAINER = "assistant-smoke"
STOP_GRACE_SECONDS = 30
USER_ID = 4242
CHAT_ID = 4242


class SmokeFailure(Exception):
    """The smoke test failed; the message says at which step."""


def run(*args: str, timeout: float = 600, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; SmokeFailure with the output if it fails."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise SmokeFailure(
            f"{' '.join(args[:4])} ... exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result  # type: ignore[no-any-return]


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None if one answers."""
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        said = result.stderr.strip().splitlines()
        return f"no Docker engine answers ({said[-1] if said else 'docker info failed'})"
    return None


def image_exists(name: str) -> bool:
    return run("docker", "image", "inspect", name, check=False, timeout=60).returncode == 0


def base_image() -> str:
    """The official slim image if present locally, else a Debian base built offline (cached)."""
    if os.environ.get("SMOKE_BASE_IMAGE"):
        return os.environ["SMOKE_BASE_IMAGE"]
    if image_exists(OFFICIAL_BASE):
        return OFFICIAL_BASE
    if image_exists(OFFLINE_BASE):
        return OFFLINE_BASE
    if shutil.which("debootstrap") is None:
        raise SmokeFailure(f"{OFFICIAL_BASE} is not present and debootstrap is missing (apt-get install debootstrap)")
    print(f"building {OFFLINE_BASE} with debootstrap (a few minutes, once)", flush=True)
    with tempfile.TemporaryDirectory(prefix="smoke-rootfs-") as rootfs:
        run(
            "debootstrap", "--variant=minbase", "--include=python3,python3-venv",
            "bookworm", rootfs, "http://deb.debian.org/debian",
            timeout=1200,
        )  # fmt: skip
        for junk in BASE_JUNK:
            shutil.rmtree(Path(rootfs) / junk, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "--change", 'CMD ["python3"]', "-", OFFLINE_BASE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise SmokeFailure(f"docker import failed: {imported.stderr}")
    return OFFLINE_BASE


@contextlib.contextmanager
def wheel_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 as a pip --find-links page; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheel-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def build_image(base: str) -> float:
    """Build the image from the repository's Dockerfile; returns seconds taken."""
    with tempfile.TemporaryDirectory(prefix="smoke-wheels-") as wheels:
        run(
            sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--requirement", str(ROOT / "requirements.txt"), "--dest", wheels,
            timeout=900,
        )  # fmt: skip
        with wheel_server(Path(wheels)) as url:
            started = time.monotonic()
            run(
                "docker", "build", "--network", "host", "--tag", IMAGE,
                "--build-arg", f"BASE_IMAGE={base}",
                "--build-arg", "PIP_NO_INDEX=1",
                "--build-arg", f"PIP_FIND_LINKS={url}",
                str(ROOT),
                timeout=1200,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            )  # fmt: skip
            return time.monotonic() - started


def image_size(name: str) -> int:
    """Bytes of an image, its base's layers included."""
    return int(run("docker", "image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, timeout: float) -> float:
    """Poll /healthz from outside the container (there is no event to wait on); seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return time.monotonic() - started
        state = run("docker", "inspect", "--format", "{{.State.Status}}", CONTAINER, check=False).stdout.strip()
        if state not in {"running", "created"}:
            raise SmokeFailure(f"container is {state} before /healthz answered:\n{logs_tail()}")
        time.sleep(0.2)
    raise SmokeFailure(f"/healthz did not answer 200 within {timeout} s:\n{logs_tail()}")


def logs_tail(lines: int = 40) -> str:
    result = run("docker", "logs", "--tail", str(lines), CONTAINER, check=False)
    return result.stdout + result.stderr


def memory_usage() -> str:
    result = run("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", CONTAINER, check=False, timeout=60)
    return result.stdout.strip() or "?"


def smoke(keep: bool) -> dict[str, str]:
    figures: dict[str, str] = {}
    base = base_image()
    figures["base image"] = base
    figures["build (s)"] = f"{build_image(base):.1f}"
    size, base_size = (image_size(name) for name in (IMAGE, base))
    figures["image size (MB)"] = f"{size / 1e6:.0f}"
    figures["  of which the base (MB)"] = f"{base_size / 1e6:.0f}"
    figures["  of which the assistant (MB)"] = f"{(size - base_size) / 1e6:.0f}"

    run("docker", "rm", "--force", CONTAINER, check=False)
    volume = run("docker", "volume", "create").stdout.strip()
    mcp_file = Path(tempfile.mkdtemp(prefix="smoke-mcp-")) / "mcp.yml"
    mcp_file.write_text("servers: {}\n", encoding="utf-8")
    mcp_file.parent.chmod(0o755)
    mcp_file.chmod(0o644)
    health_port = free_port()
    with FakeTelegramServer() as telegram, FakeLLMServer() as llm:
        run(
            "docker", "run", "--detach", "--name", CONTAINER, "--network", "host", "--init",
            "--read-only", "--tmpfs", "/tmp:size=64m",  # noqa: S108 - the container's own /tmp "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--memory", "512m",
            "--volume", f"{volume}:/app/data", "--volume", f"{mcp_file}:/app/conf/mcp.yml:ro",
            "--env", f"TELEGRAM_BOT_TOKEN={telegram.token}",
            "--env", f"TELEGRAM_API_BASE_URL={telegram.base_url}",
            "--env", f"TELEGRAM_ALLOWED_USER_IDS={USER_ID}",
            "--env", "LLM_PROVIDER=openai", "--env", "LLM_API_KEY=smoke-test-key",
            "--env", f"LLM_BASE_URL={llm.openai_base_url}",
            "--env", f"HEALTH_PORT={health_port}",
            IMAGE,
        )  # fmt: skip
        try:
            figures["start-up to /healthz 200 (s)"] = f"{wait_healthy(health_port, 60):.2f}"
            healthcheck = run("docker", "exec", CONTAINER, "python", "/app/deploy/healthcheck.py", check=False)
            if healthcheck.returncode != 0:
                raise SmokeFailure(f"the image's HEALTHCHECK command failed: {healthcheck.stderr}")

            sent_at = time.monotonic()
            telegram.add_text_message(chat_id=CHAT_ID, text="hello from the smoke test", user_id=USER_ID)
            try:
                [reply] = telegram.wait_for_sent(chat_id=CHAT_ID, timeout=60)
            except TimeoutError as exc:
                raise SmokeFailure(f"no reply: {exc}\n{logs_tail()}") from exc
            figures["message to reply (s)"] = f"{time.monotonic() - sent_at:.2f}"
            if "hello from the smoke test" not in reply.text:
                raise SmokeFailure(f"unexpected reply {reply.text!r}")
            figures["memory after a turn"] = memory_usage()

            stop_started = time.monotonic()
            run("docker", "stop", "--time", str(STOP_GRACE_SECONDS), CONTAINER, timeout=STOP_GRACE_SECONDS + 30)
            stop_seconds = time.monotonic() - stop_started
            figures["docker stop (s)"] = f"{stop_seconds:.2f}"
            exit_code = run("docker", "inspect", "--format", "{{.State.ExitCode}}", CONTAINER).stdout.strip()
            figures["exit code"] = exit_code
            if exit_code != "0":
                raise SmokeFailure(f"exit code {exit_code} after docker stop:\n{logs_tail()}")
            if stop_seconds >= STOP_GRACE_SECONDS:
                raise SmokeFailure(f"stop took {stop_seconds:.1f} s: SIGTERM was not honoured, Docker had to kill")
            check_log_lines(telegram.token)
        finally:
            if not keep:
                run("docker", "rm", "--force", CONTAINER, check=False)
                run("docker", "volume", "rm", "--force", volume, check=False)
            shutil.rmtree(mcp_file.parent, ignore_errors=True)
    return figures


def check_log_lines(token: str) -> None:
    """Every stdout line is one JSON object, and the bot token appears in none."""
    result = run("docker", "logs", CONTAINER)
    if token in result.stdout or token in result.stderr:
        raise SmokeFailure("the bot token appears in the container's log")
    for line in result.stdout.splitlines():
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SmokeFailure(f"a log line is not JSON: {line!r}") from exc
        if not {"timestamp", "level", "event"} <= set(parsed):
            raise SmokeFailure(f"a log line lacks timestamp/level/event: {line!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="leave the container and volume for inspection")
    args = parser.parse_args()
    problem = engine_problem()
    if problem is not None:
        print(f"SKIP: {problem}")
        return 0
    try:
        figures = smoke(args.keep)
    except SmokeFailure as exc:
        print(f"FAIL: {exc}")
        return 1
    width = max(len(name) for name in figures)
    print(f"{'figure':<{width}}  value")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    print("PASS: reply received, clean exit 0 on docker stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
