"""The proxy for a host, as the environment names it (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY).

Every HTTP client of ours asks here once per host, instead of aiohttp's `trust_env`, which looks the
proxy up and reads ~/.netrc in a worker thread for every request (two thread trips per call).
"""

from __future__ import annotations

import functools
from urllib.request import getproxies, proxy_bypass

__all__ = ["proxy_for_host"]


@functools.cache
def proxy_for_host(scheme: str, host: str) -> str | None:
    """The proxy the environment names for URLs of this scheme and host, as httpx honours them; read
    once per host."""
    if proxy_bypass(host):
        return None
    proxies = getproxies()
    return proxies.get(scheme) or proxies.get("all")
