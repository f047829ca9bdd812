"""`GET /healthz`: a tiny HTTP endpoint for Docker's HEALTHCHECK, with no web framework."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["HealthServer"]

log = structlog.get_logger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """Answers `GET /healthz` with 200 or 503 and a JSON body from `check()`; anything else 404."""

    def __init__(self, host: str, port: int, check: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self._host = host
        self._port = port
        self._check = check
        self.port: int | None = None

    async def run(self) -> None:
        """Serve until cancelled."""
        server = await asyncio.start_server(self._serve, self._host, self._port)
        self.port = server.sockets[0].getsockname()[1]
        log.info("health_endpoint_listening", host=self._host, port=self.port)
        async with server:
            await server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request_line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request_line.decode("latin-1").split()
            if len(parts) < 2:
                status, body = 404, {"status": "bad request"}
            elif parts[1].split("?")[0] != "/healthz":
                status, body = 404, {"status": "not found"}
            elif parts[0] not in ("GET", "HEAD"):
                status, body = 405, {"status": "method not allowed"}
            else:
                ok, body = self._check()
                status = 200 if ok else 503
            payload = json.dumps(body).encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head + (payload if parts and parts[0] != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
