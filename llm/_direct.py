"""Streamed model requests straight over aiohttp: the lean HTTP path of the hot request.

Through the SDK, one streamed request builds a pydantic options object, an httpx2 request (its URL
parsed twice, its headers normalised), and crosses the SDK's aiohttp adapter both ways: ~1.5 ms of
CPU per request at 20 in flight, against ~0.45 ms for the same POST made here (bench/http_clients.py,
the `openai` row: `aiohttp` against `lean`). What the SDK would send is kept: its URL, its default headers and its
authentication headers, read once from the SDK's own client; the JSON is encoded as the SDK encodes
it. Errors are those of the SDK path: an error status becomes `error_for_status` (the same statuses,
types and `retry-after` handling), a connection or timeout failure the same LLMUnavailable.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from llm._errors import error_for_status, unavailable
from ops.proxies import proxy_for_host

__all__ = ["DirectStreams", "EncodedTools", "encode_body", "sdk_request_headers"]


class EncodedTools(list[dict[str, Any]]):
    """A request's `tools`, and their JSON, made once for the same tools (`encode_body` writes it as
    is): every turn sends them again, and they are most of a short conversation's request."""

    __slots__ = ("json",)

    def __init__(self, tools: list[dict[str, Any]]) -> None:
        super().__init__(tools)
        self.json = _dumps(tools)


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The request's JSON as the SDK encodes it; `tools` given as EncodedTools are not encoded again."""
    tools = body.get("tools")
    if not isinstance(tools, EncodedTools):
        return _dumps(body).encode()
    rest = _dumps({key: value for key, value in body.items() if key != "tools"})
    return f'{rest[:-1]}{"," if len(rest) > 2 else ""}"tools":{tools.json}}}'.encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


ERROR_BODY_LIMIT = 64 * 1024
"""The most of an error response's body that is read (its `error.type` is near the start)."""

DRAIN_SECONDS = 0.1
"""How long the rest of a body is read after the stream said it is over, as the SDKs do: a body read
to its end leaves its connection to the next request, a body cut short closes it."""


def sdk_request_headers(client: Any) -> dict[str, str]:
    """The headers the SDK's `client` sends with every request: its defaults (user agent, API version,
    content type, the SDK's platform headers) and its authentication (a key, or none for a local server)."""
    headers = {**client.default_headers, **client.auth_headers}
    return {name: value for name, value in headers.items() if isinstance(value, str)}


class DirectStreams:
    """POSTs of streamed requests to `url` with `headers`, over one aiohttp session made on first use.

    Timeouts as the SDK's client applies its one number: to connecting, and to each read of the body
    (`request_timeout`, or a request's shorter cap). Up to 1,000 connections; an idle one is closed
    after 5 s, so the sockets and buffers of a burst are not held for nothing.
    """

    def __init__(
        self, provider: str, url: str, headers: Mapping[str, str], tls: ssl.SSLContext, request_timeout: float
    ) -> None:
        self._provider = provider
        self._url = url
        self._headers = dict(headers)
        self._tls = tls
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        parts = urlsplit(url)
        self._proxy = proxy_for_host(parts.scheme, parts.hostname or "")

    @asynccontextmanager
    async def open(self, body: Mapping[str, Any], timeout: float | None) -> AsyncIterator[AsyncGenerator[bytes, None]]:
        """Send `body`; yield the response body's chunks as they arrive (a 2xx response only).

        Raises LLMRejected / LLMUnavailable for an error status or a failed connection, and
        LLMUnavailable when reading the body fails or times out.
        """
        limit = timeout if timeout is not None and timeout < self._request_timeout else self._request_timeout
        data = encode_body(body)
        client_timeout = aiohttp.ClientTimeout(total=None, connect=limit, sock_read=limit)
        try:
            response = await self._open_session().post(
                self._url, data=data, headers=self._headers, timeout=client_timeout, proxy=self._proxy
            )
        except TimeoutError as exc:
            raise unavailable(self._provider, "request timed out") from exc
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise unavailable(self._provider, "connection failed") from exc
        try:
            if response.status >= 400:
                error_body = await self._error_body(response)
                raise error_for_status(self._provider, response.status, error_body, response.headers)
            yield self._chunks(response)
        finally:
            response.release()

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise unavailable(self._provider, "request timed out") from exc
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise unavailable(self._provider, "connection failed") from exc

    @staticmethod
    async def drain(chunks: AsyncIterator[bytes]) -> None:
        """Read what is left of a body for a moment, so that its connection can be used again."""
        with suppress(TimeoutError, aiohttp.ClientError, OSError):
            async with asyncio.timeout(DRAIN_SECONDS):
                async for _ in chunks:
                    pass

    async def _error_body(self, response: aiohttp.ClientResponse) -> object:
        """The error's JSON (None if it is not JSON, or unreadable: the status alone then says it)."""
        try:
            raw = await response.content.read(ERROR_BODY_LIMIT)
            return json.loads(raw)
        except (ValueError, TimeoutError, aiohttp.ClientError, OSError):
            return None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=5.0, ssl=self._tls)
            # HTTPS_PROXY / NO_PROXY apply, as they do to the SDK's own client, looked up once (see
            # ops.proxies; aiohttp's trust_env costs two thread trips per request).
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
