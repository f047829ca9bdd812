"""Importing python-telegram-bot without the optional extras it loads whenever they are installed.

PTB imports `cryptography` (Telegram Passport decryption, when a bot has a private key) and httpx
imports its command-line client's `click` (failing later on `rich` or `pygments`): ~10% of the
time to the first poll, for features this assistant never uses. Both are installed as other
packages' dependencies (MCP's HTTP transport, uvicorn), so they stay importable afterwards.
"""

from __future__ import annotations

import sys

__all__ = ["OPTIONAL_EXTRAS", "import_telegram_library"]

OPTIONAL_EXTRAS = ("cryptography", "httpx._main")
"""What PTB and httpx would import and we do not use: PTB's Passport then says cryptography is not
installed (`telegram._passport.credentials.CRYPTO_INSTALLED`), and `httpx.main` is httpx's stub."""


def import_telegram_library() -> None:
    """Import `telegram` with `OPTIONAL_EXTRAS` hidden for the time of the import (a name that is
    None in `sys.modules` raises ImportError, which both libraries catch); then show them again."""
    if "telegram" in sys.modules:
        return
    hidden = [name for name in OPTIONAL_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the documented way to block an import
    try:
        import telegram  # noqa: F401  # imported for its side effect: loaded once, without the extras
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
