"""Webhooks on the fake Bot API: setWebhook / deleteWebhook / getWebhookInfo and delivery.

Rules as telegram-bot-api (tdlib) applies them:
- `url` must parse as an HTTP(S) URL ("Bad Request: invalid webhook URL specified"); an empty url
  deletes the webhook. Plain http:// is accepted, as a local Bot API server accepts it; with
  `require_https` on, the api.telegram.org rules apply (HTTPS, ports 80, 88, 443, 8443).
- `secret_token`: at most 256 characters of A-Z a-z 0-9 _ - ("secret token is too long" /
  "secret token contains unallowed characters"); sent as `X-Telegram-Bot-Api-Secret-Token`.
- `allowed_updates` sticks (shared with getUpdates); `max_connections` 1-100 (clamped), default 40;
  `drop_pending_updates` clears the queue.
- While a webhook is set, getUpdates answers 409 "Conflict: can't use getUpdates method while
  webhook is active; use deleteWebhook to delete the webhook first", and a long poll running when
  it is set ends with 409 "Conflict: terminated by setWebhook request".

Delivery: each pending update is POSTed as JSON to the URL. Updates of one chat go one at a time,
in order (the next only after the previous was answered 2xx); different chats go in parallel, up
to max_connections. A non-2xx answer or a connection failure is retried as Telegram does: the first
retry at once (or after the answer's Retry-After), then after 2, 4, 8, ... units (at most 60), where the unit
is `webhook_retry_unit` seconds (Telegram's is 1 s; the fake's default keeps tests fast); after
`webhook_max_attempts` attempts the update is dropped (Telegram drops it after 24 hours). A 2xx
answer whose JSON body names a `method` runs that method (not get*/setWebhook/deleteWebhook).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from tests.fakes._telegram_common import ApiError, Described, bool_param, int_param, json_list

if TYPE_CHECKING:
    from tests.fakes.telegram_server import FakeTelegramServer

_SECRET = re.compile(r"[A-Za-z0-9_-]*")
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST of an update to the webhook: `status` is the HTTP status (0 when the connection failed)."""

    update_id: int
    attempt: int
    status: int
    error: str | None
    secret_header: str | None
    time: float


@dataclass
class _Webhook:
    url: str = ""
    secret_token: str = ""
    max_connections: int = 40
    last_error_date: int = 0
    last_error_message: str = ""
    attempts: list[WebhookAttempt] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    fails: dict[int, int] = field(default_factory=dict)
    delay: dict[int, int] = field(default_factory=dict)
    wakeup_at: dict[int, float] = field(default_factory=dict)
    inflight: set[Any] = field(default_factory=set)


class WebhookMixin:
    """Webhook methods and the delivery loop for FakeTelegramServer (see the module docstring)."""

    require_https: bool = False
    """Apply api.telegram.org's URL rules (HTTPS only, ports 80/88/443/8443) instead of a local server's."""
    webhook_retry_unit: float = 0.05
    """Seconds per unit of Telegram's retry backoff (Telegram's unit is 1 s)."""
    webhook_max_attempts: int = 8
    """Attempts before an undeliverable update is dropped."""
    webhook_timeout: float = 10.0
    """Seconds the fake waits for the webhook's answer."""

    def _init_webhook(self) -> None:
        self._webhook = _Webhook()
        self._webhook_wake: asyncio.Event | None = None

    # -- inspecting --------------------------------------------------------------------------------

    @property
    def webhook_url(self: FakeTelegramServer) -> str:
        """The webhook set, or ""."""
        with self._lock:
            return self._webhook.url

    @property
    def webhook_attempts(self: FakeTelegramServer) -> list[WebhookAttempt]:
        """Every POST to the webhook, in order."""
        with self._lock:
            return list(self._webhook.attempts)

    @property
    def webhook_delivered(self: FakeTelegramServer) -> list[int]:
        """update_ids the webhook acknowledged (2xx), in order."""
        with self._lock:
            return list(self._webhook.delivered)

    @property
    def webhook_dropped(self: FakeTelegramServer) -> list[int]:
        """update_ids given up on after `webhook_max_attempts` failures."""
        with self._lock:
            return list(self._webhook.dropped)

    async def await_webhook_delivered(self: FakeTelegramServer, *update_ids: int, timeout: float = 5.0) -> None:
        """Await until the webhook acknowledged every one of `update_ids`."""
        wanted = set(update_ids)
        await self._await(
            lambda: wanted <= set(self._webhook.delivered), timeout, f"webhook delivery of {sorted(wanted)}"
        )

    async def await_webhook_attempts(
        self: FakeTelegramServer, count: int = 1, timeout: float = 5.0
    ) -> list[WebhookAttempt]:
        """Await until `count` webhook POSTs were made; return them all."""
        await self._await(lambda: len(self._webhook.attempts) >= count, timeout, f"{count} webhook attempt(s)")
        return self.webhook_attempts

    # -- methods -----------------------------------------------------------------------------------

    async def _m_setWebhook(self: FakeTelegramServer, params: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        if not url:
            return self._delete_webhook(params)
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(400, "Bad Request: invalid webhook URL specified")
        secret = str(params.get("secret_token") or "")
        if len(secret) > 256:
            raise ApiError(400, "Bad Request: secret token is too long")
        if not _SECRET.fullmatch(secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if self.require_https:
            if parts.scheme != "https":
                raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
            if (parts.port or 443) not in (80, 88, 443, 8443):
                raise ApiError(400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        connections = max(1, min(100, int_param(params.get("max_connections"), "max_connections", 40)))
        allowed = json_list(params.get("allowed_updates"))
        with self._lock:
            hook = self._webhook
            unchanged = (hook.url, hook.secret_token, hook.max_connections) == (url, secret, connections)
            if allowed is not None:
                self._state.allowed_updates = allowed
            if bool_param(params.get("drop_pending_updates")):
                self._state.updates.clear()
            elif unchanged:
                return Described(True, "Webhook is already set")
            hook.url, hook.secret_token, hook.max_connections = url, secret, connections
            # A long poll running now ends with 409, as on Telegram.
            self._state.poll_generation += 1
            self._state.poll_abort = "Conflict: terminated by setWebhook request"
        self._wake_webhook()
        assert self._new_update is not None
        self._loop_call(self._new_update.set)
        return Described(True, "Webhook was set")

    async def _m_deleteWebhook(self: FakeTelegramServer, params: dict[str, Any]) -> Any:
        return self._delete_webhook(params)

    def _delete_webhook(self: FakeTelegramServer, params: dict[str, Any]) -> Described:
        with self._lock:
            if bool_param(params.get("drop_pending_updates")):
                self._state.updates.clear()
            was_set = bool(self._webhook.url)
            self._webhook.url = ""
            self._webhook.secret_token = ""
        return Described(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _m_getWebhookInfo(self: FakeTelegramServer, params: dict[str, Any]) -> Any:
        with self._lock:
            hook = self._webhook
            info: dict[str, Any] = {
                "url": hook.url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._state.updates),
            }
            if hook.last_error_date:
                info |= {"last_error_date": hook.last_error_date, "last_error_message": hook.last_error_message}
            if hook.url:
                info |= {"max_connections": hook.max_connections, "ip_address": "127.0.0.1"}
            if self._state.allowed_updates:
                info["allowed_updates"] = list(self._state.allowed_updates)
            return info

    # -- delivery ----------------------------------------------------------------------------------

    def _wake_webhook(self) -> None:
        if self._webhook_wake is not None:
            self._loop_call(self._webhook_wake.set)

    async def _webhook_loop(self: FakeTelegramServer) -> None:
        """Runs on the server's loop: hands ready updates to delivery tasks, one per chat at a time."""
        self._webhook_wake = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                while True:
                    self._webhook_wake.clear()
                    next_wakeup = self._start_deliveries(session, tasks)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._webhook_wake.wait(), next_wakeup)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _start_deliveries(
        self: FakeTelegramServer, session: aiohttp.ClientSession, tasks: set[asyncio.Task[None]]
    ) -> float | None:
        """Start what can go now; return seconds until the next retry is due (None: wait for a wake-up)."""
        now = time.monotonic()
        next_due: float | None = None
        loop = asyncio.get_running_loop()
        with self._lock:
            hook = self._webhook
            if not hook.url:
                return None
            self._deliverable(0)  # drops update types not asked for, as Telegram does
            held = set(hook.inflight)
            for update in list(self._state.updates):
                queue = _queue_of(update)
                if queue in held:
                    continue
                held.add(queue)  # only the oldest pending update of a chat may go
                due = hook.wakeup_at.get(update["update_id"], 0.0)
                if due > now:
                    next_due = due if next_due is None else min(next_due, due)
                    continue
                if len(hook.inflight) >= hook.max_connections:
                    break
                hook.inflight.add(queue)
                task = loop.create_task(self._deliver(session, dict(update), queue, hook.url, hook.secret_token))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        return None if next_due is None else max(0.0, next_due - now)

    async def _deliver(
        self: FakeTelegramServer,
        session: aiohttp.ClientSession,
        update: dict[str, Any],
        queue: Any,
        url: str,
        secret: str,
    ) -> None:
        """POST one update; record the outcome and schedule a retry or drop it."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        status, error, retry_after, body = 0, None, 0, None
        try:
            async with session.post(url, json=update, headers=headers) as response:
                status = response.status
                raw = await response.read()
                if 200 <= status <= 299:
                    with contextlib.suppress(ValueError):
                        body = json.loads(raw) if raw else None
                else:
                    error = f"Wrong response from the webhook: {status} {response.reason}"
                    with contextlib.suppress(ValueError):
                        retry_after = max(0, min(3600, int(response.headers.get("Retry-After", "0"))))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = _connection_error(exc)
        try:
            self._settle(update["update_id"], status, error, retry_after, secret or None)
        finally:
            with self._lock:
                self._webhook.inflight.discard(queue)
            self._wake_webhook()
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            await self._run_method(body["method"], {k: v for k, v in body.items() if k != "method"})

    def _settle(
        self: FakeTelegramServer, update_id: int, status: int, error: str | None, retry_after: int, secret: str | None
    ) -> None:
        hook = self._webhook
        with self._lock:
            attempt = hook.fails.get(update_id, 0) + 1
            hook.attempts.append(WebhookAttempt(update_id, attempt, status, error, secret, time.monotonic()))
            if error is None:
                hook.delivered.append(update_id)
                self._forget_update(update_id)
            else:
                hook.last_error_date = int(time.time())
                hook.last_error_message = error
                # Telegram's schedule: the first retry after Retry-After (0: at once), then 2, 4, 8... units.
                delay = hook.delay.get(update_id, 1)
                wait = retry_after
                if retry_after == 0 and attempt > 1:
                    delay = min(delay * 2, 60)
                    wait = delay
                hook.delay[update_id] = delay
                hook.fails[update_id] = attempt
                hook.wakeup_at[update_id] = time.monotonic() + wait * (
                    self.webhook_retry_unit if retry_after == 0 else 1
                )
                if attempt >= self.webhook_max_attempts:
                    hook.dropped.append(update_id)
                    self._forget_update(update_id)
            self._notify()

    def _forget_update(self: FakeTelegramServer, update_id: int) -> None:
        hook = self._webhook
        self._state.updates = [u for u in self._state.updates if u["update_id"] != update_id]
        for table in (hook.fails, hook.delay, hook.wakeup_at):
            table.pop(update_id, None)


def _queue_of(update: dict[str, Any]) -> Any:
    """Telegram's delivery queue of an update: its chat (so one chat's updates stay in order)."""
    for value in update.values():
        if isinstance(value, dict):
            chat = value.get("chat") or (value.get("message") or {}).get("chat")
            if isinstance(chat, dict) and "id" in chat:
                return ("chat", chat["id"])
            sender = value.get("from")
            if isinstance(sender, dict) and "id" in sender:
                return ("user", sender["id"])
    return ("update", update.get("update_id"))


def _connection_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "Read timeout expired"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "Connection refused"
    return "Webhook connection closed"
