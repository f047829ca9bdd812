"""Run the personal assistant: `python main.py [--console | --check] [--config PATH]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence

EXIT_CONFIG = 2
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of CONTRACT.md."""
    parser = argparse.ArgumentParser(description="A personal AI assistant on Telegram, with MCP tools.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--console", action="store_true", help="talk to the assistant in this terminal")
    mode.add_argument("--check", action="store_true", help="reach every dependency once and report")
    parser.add_argument("--config", help="configuration file (also ASSISTANT_CONFIG; default conf/config.yml)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Load settings, configure logging, build the system, run it until a signal; the exit status."""
    # python-telegram-bot's future behaviour (durations as timedelta) now, which silences its
    # deprecation warning on every RetryAfter; our code reads both forms.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    args = parse_args(argv)
    from conf import ConfigError, load_settings
    from conf.mcp import load_mcp_servers

    try:
        settings = load_settings(args.config)
        if not args.console:
            token = settings.telegram.token
            if not token:
                raise ConfigError("TELEGRAM_BOT_TOKEN", "is required (or run with --console to try without Telegram)")
            if not _TOKEN_SHAPE.match(token):
                raise ConfigError(
                    "TELEGRAM_BOT_TOKEN", "does not look like a bot token (digits, a colon, then letters)"
                )
        mcp_servers = load_mcp_servers(settings.mcp_config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from actors._memory import limit_malloc_arenas
    from actors.logs import configure_logging

    limit_malloc_arenas()

    # In the console the conversation owns stdout, so logs go to stderr there.
    configure_logging(
        settings.logging,
        secrets=settings.secrets(),
        stream=sys.stderr if args.console else None,
        cache_loggers=True,
    )
    if args.check:
        from actors.check import run_checks

        return asyncio.run(run_checks(settings, mcp_servers, sys.stdout, telegram=not args.console))

    from actors.system import EXIT_FATAL, AssistantSystem

    system = AssistantSystem(settings, mcp_servers, mode="console" if args.console else "telegram")
    try:
        return asyncio.run(system.run())
    except KeyboardInterrupt:
        return 0
    except Exception:
        import structlog

        structlog.get_logger("main").critical("assistant_crashed", exc_info=True)
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
