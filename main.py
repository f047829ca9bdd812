"""Run the personal assistant: `python main.py [--console | --check] [--role ROLE] [--config PATH]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of the operator contract (README, "Commands")."""
    parser = argparse.ArgumentParser(description="A personal AI assistant on Telegram, with MCP tools.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--console", action="store_true", help="talk to the assistant in this terminal")
    mode.add_argument("--check", action="store_true", help="reach every dependency once and report")
    parser.add_argument(
        "--role",
        choices=("both", "gateway", "worker"),
        default="both",
        help="with INGRESS_QUEUE_URL: only receive updates into the queue, or only handle them (default: both)",
    )
    parser.add_argument("--config", help="configuration file (also ASSISTANT_CONFIG; default conf/config.yml)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the assistant; the exit status."""
    args = parse_args(argv)
    from app.run import run

    return run("console" if args.console else "check" if args.check else "telegram", args.config, role=args.role)


if __name__ == "__main__":
    sys.exit(main())
