"""moto's server with its requests handled one at a time, as DynamoDB's conditional writes need.

moto 5.2.5 serves each request in its own thread and checks a `ConditionExpression` and applies
the update without a lock: two concurrent conditional `UpdateItem`s can both succeed, which real
DynamoDB never allows (a conditional write is atomic). Tests of claims (reminder firings) would
judge the fake, not our code; so this server takes one lock around every request (the WSGI app
is wrapped), which is what DynamoDB's per-item atomicity promises, and more.

    with serialised_moto_server() as endpoint:   # "http://127.0.0.1:<port>"
        ...

SQS FIFO queues need it too: moto 5.2.5 reads which message groups are in flight before it marks
its own pick in flight, without a lock, so two concurrent ReceiveMessage calls can hand one group
to two consumers, which real SQS never does (a group is in one consumer's hands at a time); and a
group can come back out of order after a visibility timeout. Under the lock each receive sees the
groups the one before it took. And before each receive, a message whose visibility timeout ran
out stops counting as in flight (moto forgets it only when its loop reaches it, after it may have
handed out a later message of the same group). A long poll (`WaitTimeSeconds`) must not hold the lock while it
waits, or every other request would wait with it: it is served as a loop of immediate receives,
each under the lock, sleeping between them on a condition that every other request signals, until
one returns messages or the wait is over (what SQS's long poll does, seen from the client).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from tests.fakes.moto_server import moto_server

__all__ = ["serialised_moto_server"]


class _OneAtATime:
    """A WSGI app that runs `app` for one request at a time (its whole response included); SQS
    long polls as a loop of immediate receives under the lock (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        wait = _long_poll_wait(environ)
        if wait is None:
            with self.lock:
                if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
                    _forget_expired_receipts()
                body = list(self.app(environ, start_response))
                operation = environ.get("HTTP_X_AMZ_TARGET", "").removeprefix("AmazonSQS.")
                if operation.startswith("SendMessage"):
                    self.changed.notify_all()
                elif operation in _RELEASING:
                    self.changed.notify()  # frees one group at most: one waiting poll may take it
                return body
        return self._long_poll(environ, start_response, wait)

    def _long_poll(self, environ: dict[str, Any], start_response: Any, wait: tuple[dict[str, Any], float]) -> Any:
        request, seconds = wait
        request["WaitTimeSeconds"] = 0
        data = json.dumps(request).encode()
        deadline = time.monotonic() + seconds
        with self.lock:
            while True:
                _forget_expired_receipts()
                captured: list[Any] = []
                keep = captured.append
                attempt = dict(environ, **{"wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data))})
                body = list(self.app(attempt, lambda *args, keep=keep: keep(args)))
                left = deadline - time.monotonic()
                if left <= 0 or b'"Messages"' in b"".join(body):
                    start_response(*captured[0])
                    return body
                # Released while waiting: sends (and visibility timeouts running out) can happen meanwhile.
                # Woken only by what can make a message receivable (a receive costs a scan of the queue).
                self.changed.wait(min(left, 0.2))


_RELEASING = frozenset(
    {
        "SendMessage",
        "SendMessageBatch",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
    }
)
"""SQS requests after which a waiting long poll may find a message (a new one, or a group freed)."""


def _forget_expired_receipts() -> None:
    """Messages visible again are no longer in flight, so their group's order holds (see the module)."""
    from moto.sqs.models import sqs_backends

    for account in list(sqs_backends.values()):
        for backend in list(account.values()):
            for queue in list(backend.queues.values()):
                for message in [m for m in queue.pending_messages if m.visible]:
                    queue.pending_messages.discard(message)


def _long_poll_wait(environ: dict[str, Any]) -> tuple[dict[str, Any], float] | None:
    """The request and its wait, for an SQS ReceiveMessage that long-polls; None for anything else."""
    if environ.get("HTTP_X_AMZ_TARGET") != "AmazonSQS.ReceiveMessage":
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    request = json.loads(environ["wsgi.input"].read(length) or b"{}")
    environ["wsgi.input"] = io.BytesIO(json.dumps(request).encode())
    environ["CONTENT_LENGTH"] = str(len(environ["wsgi.input"].getvalue()))
    seconds = float(request.get("WaitTimeSeconds") or 0)
    return (request, seconds) if seconds > 0 else None


class _SerialisedMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


@contextmanager
def serialised_moto_server() -> Iterator[str]:
    """Run the serialised server in a thread on a free loopback port; yield its endpoint URL."""
    with moto_server(_SerialisedMotoServer) as endpoint:
        yield endpoint
