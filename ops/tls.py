"""The TLS context of the Bot API's HTTP sessions: certifi's CA bundle, loaded once per process.

Loading the bundle is ~30 ms of OpenSSL parsing, which runs without the GIL: `load_in_background`
starts it in a thread while the process goes on importing the rest of itself (on a machine with
more than one core the two overlap); whoever asks for `certifi_context` first waits for it. Why
certifi's bundle and not the system's (which aiohttp's default context holds): httpx trusts
certifi's, so every client of the process trusts the same authorities on every machine.
"""

from __future__ import annotations

import ssl
import threading

__all__ = ["certifi_context", "load_in_background"]

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def certifi_context() -> ssl.SSLContext:
    """The one context (made now unless a thread made it or is making it: then that one)."""
    global _context
    with _lock:
        if _context is None:
            import certifi

            _context = ssl.create_default_context(cafile=certifi.where())
        return _context


def load_in_background() -> None:
    """Start loading the context in a thread of its own, which ends once it is loaded."""
    threading.Thread(target=_load, name="tls-context", daemon=True).start()


def _load() -> None:
    try:
        certifi_context()
    except (OSError, ssl.SSLError):  # a broken bundle: the first caller tries again, and raises
        return
