"""What `python main.py` does once its arguments are parsed: settings, logging, then one mode."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.scale import Role
    from app.system import AssistantSystem

__all__ = ["EXIT_CONFIG", "Mode", "run"]

EXIT_CONFIG = 2

Mode = Literal["telegram", "console", "check"]


def run(mode: Mode, config_path: str | None = None, *, role: Role = "both") -> int:
    """Load settings, configure logging, run `mode` (in `role`: app/scale.py) until it ends; the exit
    status of the contract."""
    if mode == "check":
        return _run(mode, config_path, role)
    from ops.memory import pause_collection

    pause_collection()  # until the system serves (`_serve`)
    # Until the system installs its own handlers (after the imports and settings), a SIGTERM stops
    # the process as Ctrl-C does, and either is a clean stop: status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(mode, config_path, role)
    except KeyboardInterrupt:
        return 0


def _library_defaults() -> None:
    """Environment defaults of the libraries, set before they are imported (an operator's own
    value wins)."""
    # python-telegram-bot's future behaviour (durations as timedelta) now, which silences its
    # deprecation warning on every RetryAfter; our code reads both forms.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    # No pydantic plugin is installed with the assistant: pydantic need not look for one through
    # every installed package's metadata (its documented switch; set it empty to look again).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _run(mode: Mode, config_path: str | None, role: Role) -> int:
    _library_defaults()
    from conf import ConfigError, load_settings
    from conf.mcp import load_mcp_servers, mcp_secrets

    try:
        settings = load_settings(config_path)
        if mode != "console":
            settings.telegram.require_token()
        mcp_servers = load_mcp_servers(settings.mcp_config)
        if mode == "telegram":
            from app.scale import check_role

            check_role(settings, role)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from ops.logs import configure_logging
    from ops.memory import limit_malloc_arenas, return_large_blocks

    limit_malloc_arenas()
    return_large_blocks()
    # In the console the conversation owns stdout, and --check's lines are stdout for a person: logs
    # go to stderr there, and --check keeps only warnings and errors (the libraries' request lines
    # and our own progress lines would repeat what its lines say) unless LOG_LEVEL=DEBUG asks.
    log_settings = settings.logging
    if mode == "check" and log_settings.level == "INFO":
        log_settings = log_settings.model_copy(update={"level": "WARNING"})
    configure_logging(
        log_settings,
        secrets=[*settings.secrets(), *mcp_secrets(mcp_servers)],
        stream=None if mode == "telegram" else sys.stderr,
        cache_loggers=True,
    )
    if mode == "check":
        from app.check import run_checks

        return asyncio.run(run_checks(settings, mcp_servers, sys.stdout, telegram=True))

    if mode == "telegram":
        from app.imports import import_telegram_library

        import_telegram_library()
    from app.system import EXIT_FATAL, AssistantSystem

    system = AssistantSystem(settings, mcp_servers, mode="console" if mode == "console" else "telegram")
    system.role = role
    try:
        return asyncio.run(_serve(system))
    except KeyboardInterrupt:
        return 0
    except Exception:
        import structlog

        structlog.get_logger("main").critical("assistant_crashed", exc_info=True)
        return EXIT_FATAL


async def _serve(system: AssistantSystem, grace_seconds: float = 5.0) -> int:
    """Run the system; once it serves (its first poll, or `grace_seconds` after it started, as the
    late start waits), collect start-up's garbage once, and collect as usual from then on."""
    from ops.aio import wait_event
    from ops.memory import resume_collection

    async def resume_when_serving() -> None:
        await system.started.wait()
        serving = getattr(system.gateway, "polling", None)  # Telegram's first poll; the console serves at once
        if serving is not None:
            await wait_event(serving, grace_seconds)
        resume_collection()

    resume = asyncio.create_task(resume_when_serving(), name="resume-gc")
    try:
        return await system.run()
    finally:
        resume.cancel()
        await asyncio.wait([resume])
