"""moto's DynamoDB over real HTTP on 127.0.0.1, and a proxy in front of it that injects faults.

    with moto_server() as endpoint:          # "http://127.0.0.1:<port>"
        settings = DynamoDBSettings(table=..., region="us-east-1", endpoint_url=endpoint, create_table=True)

    async with FaultInjectingProxy(endpoint) as proxy:
        proxy.fail_next(2, status=400, error="ProvisionedThroughputExceededException")
        settings = DynamoDBSettings(..., endpoint_url=proxy.url)

tests/conftest.py makes fixtures of these (`moto_endpoint`, `aws_credentials`, `dynamodb_client`);
a test module may define its own, and set fake credentials with `fake_aws_credentials(monkeypatch)`.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import aiohttp
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

__all__ = ["FaultInjectingProxy", "LoopbackProxy", "closed_port_endpoint", "fake_aws_credentials", "moto_server"]

REGION = "us-east-1"


@contextmanager
def moto_server(server_class: type[ThreadedMotoServer] = ThreadedMotoServer) -> Iterator[str]:
    """Run moto's server (or `server_class`, a variant of it) in a thread on a free loopback port;
    yield its endpoint URL."""
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)  # one access-log line per request would drown the output
    server = server_class(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        werkzeug_log.setLevel(level)


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region in the environment; no real AWS configuration is read."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def closed_port_endpoint() -> str:
    """An endpoint on loopback where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class LoopbackProxy:
    """An HTTP proxy on 127.0.0.1 to `upstream`, in the test's event loop; `url` is where it listens.

    A subclass decides in `_handle` what to do with each request, passing it on with `_forward`.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, listener).start()
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        return await self._forward(request, await request.read())

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        """`request` (whose `body` was read) sent upstream; its answer, read whole."""
        assert self._session is not None
        headers = {
            key: value for key, value in request.headers.items() if key.lower() not in {"host", "content-length"}
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/x-amz-json-1.0")},
            )


class FaultInjectingProxy(LoopbackProxy):
    """An HTTP proxy to `upstream` that can answer the next requests with a DynamoDB error.

    It runs in the test's event loop. `requests` counts requests received, `failed` those it
    answered with an injected error.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.requests = 0
        self.failed = 0
        self._failures: list[tuple[int, str]] = []

    def fail_next(self, count: int, *, status: int = 400, error: str = "ThrottlingException") -> None:
        """Answer the next `count` requests with `status` and DynamoDB error code `error`."""
        self._failures.extend([(status, error)] * count)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self._failures:
            status, error = self._failures.pop(0)
            self.failed += 1
            payload = {"__type": f"com.amazonaws.dynamodb.v20120810#{error}", "message": "injected by the test"}
            return web.Response(
                status=status,
                body=json.dumps(payload).encode(),
                headers={"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": error},
            )
        return await self._forward(request, body)
