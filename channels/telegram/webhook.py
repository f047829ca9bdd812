"""Webhook ingress: Telegram POSTs each update to us instead of our polling for it (aiohttp).

At start the gateway identifies the bot, replays what the ingress log holds, registers the webhook
(`setWebhook` with the secret token, the update types we read and the connection limit), then
listens on `webhook.port` for POSTs to the URL's path. The process speaks plain HTTP: TLS is the
load balancer's or a reverse proxy's (docs/scale.md).

A request is answered in this order, so nothing unverified is read and nothing unheld is confirmed:
the `X-Telegram-Bot-Api-Secret-Token` header is compared (constant time) with the secret, 401
without reading the body if it differs; a declared or actual body past `max_body_bytes` is 413;
what is not an update is 400. The update is then appended to the ingress log (file, DynamoDB or
the SQS queue) and only then answered 200; a failed append is 503, which Telegram retries. An update
this process already holds (a retry of one whose 200 was lost, or one replayed at start) is answered
200 and not routed again; on another process, the ingress log and the conversation's records
deduplicate it. With a queue (`enqueue_only`), what the workers handle is only enqueued here, so
webhook gateways scale out behind a load balancer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections import OrderedDict
from typing import Any

import structlog
from aiohttp import web

from channels.telegram.gateway import ALLOWED_UPDATES, TelegramGateway
from channels.telegram.routing import Route, is_durable
from ops.aio import run_unless_set

__all__ = ["SECRET_HEADER", "WebhookGateway"]

log = structlog.get_logger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret
_REMEMBERED = 4096  # update ids held here recently: far more than Telegram retries at once


class WebhookGateway(TelegramGateway):
    """The gateway of webhook mode (see the module). Takes TelegramGateway's arguments, plus
    `enqueue_only`: durable updates go to the ingress queue for the workers, not to local actors."""

    def __init__(self, *args: Any, enqueue_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = args[0] if args else kwargs["settings"]
        self._webhook = settings.webhook
        self._enqueue_only = enqueue_only
        self._recent: OrderedDict[int, None] = OrderedDict()
        self.registered = False
        """setWebhook succeeded (and the listener is up)."""
        self.port: int | None = None
        """The port listened on (the setting's, or the one the OS chose for port 0)."""
        self.last_update = time.monotonic()

    async def run(self) -> None:
        """Identify the bot, replay the ingress log, listen, register the webhook; serve until stopped."""
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            if not await run_unless_set(self._start(), self._stopping, name="telegram-webhook-start"):
                log.info("telegram_start_abandoned")
                return
            await self._replay_pending()
            site = web.TCPSite(runner, self._webhook.host, self._webhook.port)
            await site.start()
            addresses = runner.addresses  # the port the OS chose when the setting is 0
            self.port = int(addresses[0][1]) if addresses else self._webhook.port
            if not await run_unless_set(self._register(), self._stopping, name="telegram-webhook-register"):
                return
            log.info("telegram_webhook_listening", port=self.port, path=self._webhook.path)
            await self._stopping.wait()
        finally:
            self.registered = False
            # Telegram keeps what arrives meanwhile and retries it: the webhook stays set for the next start.
            await runner.cleanup()

    async def _start(self) -> None:
        """Identify the bot and register its commands (no deleteWebhook: this mode wants one)."""
        await self._identify()
        await self._register_commands()

    async def _identify(self) -> None:
        from channels.telegram.routing import BotIdentity

        bot = self._send_bot
        await self._retrying("getMe", bot.initialize)
        me = bot.bot
        self.identity = BotIdentity(me.id, me.username or "")
        log.info("telegram_bot_identified", bot_id=me.id, username=me.username)

    async def _register(self) -> None:
        hook = self._webhook
        await self._retrying(
            "setWebhook",
            lambda: self._send_bot.set_webhook(
                hook.url,
                secret_token=hook.secret,
                allowed_updates=ALLOWED_UPDATES,
                max_connections=hook.max_connections,
                drop_pending_updates=False,
            ),
        )
        self.registered = True

    async def _replay_pending(self) -> None:
        pending = await self._ingress.pending()
        for update in pending:
            self._remember(update["update_id"])
        await super()._replay_pending()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive while the webhook is registered and listening and the ingress log takes updates."""
        ok = self.registered and not self.ingress_failing
        status = "ok" if ok else "ingress_failing" if self.registered else "webhook_not_registered"
        since = round(time.monotonic() - self.last_update, 3)
        return ok, {"status": status, "mode": "webhook", "actors": len(self._registry), "last_update_s": since}

    def _handle(self, update_id: int, route: Route, arrived: float, *, replay: bool = False) -> None:
        if self._enqueue_only and is_durable(route):
            log.debug("update_enqueued", update_id=update_id)
            return
        super()._handle(update_id, route, arrived, replay=replay)

    # -- requests ---------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self._webhook.max_body_bytes)
        app.router.add_post(self._webhook.path, self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        secret = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(secret.encode(), self._webhook.secret.encode()):
            log.warning("webhook_secret_rejected", remote=request.remote)
            return web.Response(status=401)
        limit = self._webhook.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413)
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return web.Response(status=413)
        update = _parse_update(body)
        if update is None:
            log.warning("webhook_body_not_an_update", bytes=len(body))
            return web.Response(status=400)
        update_id = update["update_id"]
        self.last_update = time.monotonic()
        if update_id in self._recent:
            log.info("webhook_update_retried", update_id=update_id)
            return web.Response(status=200)
        # The append must finish even if Telegram hangs up meanwhile: what it held is then routed too.
        if not await asyncio.shield(self._take([update])):
            return web.Response(status=503, headers={"Retry-After": "1"})
        self._remember(update_id)
        return web.Response(status=200)

    def _remember(self, update_id: int) -> None:
        self._recent[update_id] = None
        while len(self._recent) > _REMEMBERED:
            self._recent.popitem(last=False)


def _parse_update(body: bytes) -> dict[str, Any] | None:
    """The update, or None when the body is not a JSON object with an int `update_id`."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    update_id = value.get("update_id")
    return value if isinstance(update_id, int) and not isinstance(update_id, bool) else None
