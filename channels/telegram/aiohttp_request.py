"""python-telegram-bot's `BaseRequest` on aiohttp: the same contract as its `HTTPXRequest`, at
less CPU per request.

Why: each Bot API call through httpx walks httpcore's connection pool, its h11 state machine and
anyio's stream wrappers; aiohttp parses the response in C (its `_http_parser`) and hands a pooled
connection over in a few steps. bench/telegram.py shows the difference per reply (README).

Behaviour kept from `HTTPXRequest`, which the sender and the gateway rely on:

- timeouts: `connect_timeout` (connecting), `read_timeout` (waiting for the answer), `pool_timeout`
  (waiting for a free connection), all overridable per call as PTB passes them; `write_timeout` has
  no aiohttp counterpart (a request is written into the socket's buffer without waiting), so the
  whole request is also capped at the sum of the four.
- `connection_pool_size` connections at most, kept alive for `keepalive_seconds` and reused.
- errors: a wait for the pool that runs out is `TimedOut` caused by `PoolTimeout` (nothing was
  sent); any other timeout is `TimedOut`; every other transport failure is `NetworkError`. Status
  codes become `BadRequest`, `Forbidden`, `RetryAfter`, ... in PTB's `BaseRequest`, as for httpx.
  `request_not_sent` and `request_maybe_taken` tell the two kinds apart for either library.
- proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, ...), as httpx honours them.

The aiohttp session is made on first use, inside the running event loop (aiohttp wants that), and
made again after `shutdown()` if the object is used again (`initialize()`), like `HTTPXRequest`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import httpx
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from ops.proxies import proxy_for_host

__all__ = ["AiohttpRequest", "PoolTimeout", "proxy_for_host", "request_maybe_taken", "request_not_sent", "tls_context"]


class PoolTimeout(TimeoutError):
    """Every connection of the pool stayed busy for the whole pool timeout: nothing was sent."""


_TLS: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """One TLS context for every session of the Bot API (requests and file downloads): loading the
    CA bundle costs ~1 MB and ~30 ms each time. certifi's bundle, as httpx uses, so both libraries
    trust the same authorities (aiohttp's own default context, made when it is imported, holds the
    system's CA store instead, which differs from one machine to another)."""
    global _TLS
    if _TLS is None:
        import certifi

        _TLS = ssl.create_default_context(cafile=certifi.where())
    return _TLS


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` on one aiohttp session with a pool of `connection_pool_size` connections.

    Defaults are `HTTPXRequest`'s. Close with `shutdown()` (PTB's `Bot.shutdown()` does it too).
    """

    __slots__ = (
        "_connect",
        "_keepalive",
        "_pool",
        "_pool_size",
        "_pool_timeout",
        "_read",
        "_session",
        "_tls",
        "_write",
    )

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        keepalive_seconds: float = 5.0,
        *,
        tls: bool = True,
    ) -> None:
        """`tls`: its URLs are https (the Bot API's); False for a plain-HTTP server (a local Bot API
        server), whose session then loads no CA bundle (`tls_context`: ~30 ms before the first poll;
        an https URL given anyway is still verified, with aiohttp's default context)."""
        self._pool_size = connection_pool_size
        self._read = read_timeout
        self._write = write_timeout
        self._connect = connect_timeout
        self._pool_timeout = pool_timeout
        self._keepalive = keepalive_seconds
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        # Our own count of connections in use, so that waiting for one has a timeout of its own
        # (aiohttp folds it into the connect timeout) and tells "not sent" apart.
        self._pool = asyncio.Semaphore(connection_pool_size)

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout, in seconds (see `BaseRequest.read_timeout`)."""
        return self._read

    async def initialize(self) -> None:
        """Make the session if there is none (after `shutdown()`, for instance)."""
        self._open()

    async def shutdown(self) -> None:
        """Close the session and its connections; using the object again opens a new one."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                keepalive_timeout=self._keepalive,
                ssl=tls_context() if self._tls else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Not trust_env: with it aiohttp reads ~/.netrc in a thread for every request (~0.1 ms
                # of CPU and a thread hop each); the proxy variables are read once, in `_proxy_for`.
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Make one request; (status code, body). Raises TimedOut or NetworkError (see the module)."""
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        write = self._write if isinstance(write_timeout, DefaultValue) else write_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        try:
            async with asyncio.timeout(pool):
                await self._pool.acquire()
        except TimeoutError:
            raise TimedOut(
                "Pool timeout: All connections in the connection pool are occupied. Request was *not* sent to Telegram."
            ) from PoolTimeout()
        try:
            parts = (connect, write, read)
            timeout = aiohttp.ClientTimeout(
                total=None if None in parts else sum(part or 0.0 for part in parts),
                sock_connect=connect,
                sock_read=read,
            )
            return await self._send(url, method, request_data, timeout)
        finally:
            self._pool.release()

    async def _send(
        self, url: str, method: str, request_data: RequestData | None, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, bytes]:
        session = self._open()
        try:
            data, content_type = _body(request_data)
            headers = {"User-Agent": self.USER_AGENT}
            if content_type is not None:
                headers["Content-Type"] = content_type
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout, proxy=_proxy_for(url)
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are asyncio's TimeoutError too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


_FORM = "application/x-www-form-urlencoded"


def _body(request_data: RequestData | None) -> tuple[aiohttp.FormData | bytes | None, str | None]:
    """The body as `HTTPXRequest` sends it (form fields, or multipart when there are files), and
    its content type when it is not the FormData's own. Form fields are encoded here: aiohttp would
    build a FormData (and a multipart writer) for a plain dict first."""
    if request_data is None:
        return None, None
    files = request_data.multipart_data
    if not files:
        fields = request_data.json_parameters
        return (urlencode(fields).encode(), _FORM) if fields else (None, None)
    form = aiohttp.FormData(request_data.json_parameters)
    for name, upload in files.items():
        filename, content, mimetype = _upload_parts(upload)
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form, None


@functools.cache
def _proxy_for(url: str) -> str | None:
    """The proxy for this URL (see `proxy_for_host`), looked up once per URL (a bot calls a few dozen
    method URLs)."""
    parts = urlsplit(url)
    return proxy_for_host(parts.scheme, parts.hostname or "")


def _upload_parts(upload: Any) -> tuple[str | None, Any, str | None]:
    """PTB's upload tuple: (filename, content) or (filename, content, mimetype)."""
    if len(upload) == 3:
        return upload[0], upload[1], upload[2]
    return upload[0], upload[1], None


def request_not_sent(exc: BaseException) -> bool:
    """True if the request of this PTB error never left us: our pool stayed busy (either library)."""
    return isinstance(exc.__cause__, PoolTimeout | httpx.PoolTimeout)


_MAYBE_TAKEN_HTTPX = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
_MAYBE_TAKEN_AIOHTTP = (
    TimeoutError,  # aiohttp's read and total timeouts
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientResponseError,
    aiohttp.ClientOSError,
)


def request_maybe_taken(exc: BaseException) -> bool:
    """True if this PTB error came after the whole request was written, so Telegram may have taken
    it: a read timeout, a connection lost or reset while the answer was awaited. False for failures
    that certainly left it untaken (connecting, the pool)."""
    cause = exc.__cause__
    if request_not_sent(exc):
        return False
    if isinstance(cause, _MAYBE_TAKEN_HTTPX):
        return True
    if isinstance(cause, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return False  # never connected
    return isinstance(cause, _MAYBE_TAKEN_AIOHTTP)
