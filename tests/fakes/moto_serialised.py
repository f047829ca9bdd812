"""moto's server with its requests handled one at a time, as DynamoDB's conditional writes need.

moto 5.2.5 serves each request in its own thread and checks a `ConditionExpression` and applies
the update without a lock: two concurrent conditional `UpdateItem`s can both succeed, which real
DynamoDB never allows (a conditional write is atomic). Tests of claims (reminder firings) would
judge the fake, not our code; so this server takes one lock around every request (the WSGI app
is wrapped), which is what DynamoDB's per-item atomicity promises, and more.

    with serialised_moto_server() as endpoint:   # "http://127.0.0.1:<port>"
        ...
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

__all__ = ["serialised_moto_server"]


class _OneAtATime:
    """A WSGI app that runs `app` for one request at a time (its whole response included)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


class _SerialisedMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@contextmanager
def serialised_moto_server() -> Iterator[str]:
    """Run the serialised server in a thread on a free loopback port; yield its endpoint URL."""
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)  # one access-log line per request would drown the output
    server = _SerialisedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        werkzeug_log.setLevel(level)
