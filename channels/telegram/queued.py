"""Gateways and workers on the SQS FIFO ingress queue (`INGRESS_QUEUE_URL`; docs/scale.md).

`QueueingGateway` polls Telegram as the plain gateway does, but what a conversation must answer is
only sent to the queue (the ingress log's `append`) before the offset moves past it; the workers
handle it. `QueueWorker` receives from the queue (a long poll), routes each update to the local
conversation actors exactly as the gateway would, keeps what it holds hidden from other workers
while the turns run, and deletes each message when its conversation marks it done. The message
group of an update is its conversation (`message_group_of`), so SQS hands one conversation's
updates to one worker at a time, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import structlog

from channels.telegram.gateway import TelegramGateway
from channels.telegram.routing import BotIdentity, Ignore, Route, _read_head, is_durable
from stores import StoreError
from stores.sqs_ingress import SqsIngressLog

__all__ = ["QueueWorker", "QueueingGateway", "message_group_of"]

log = structlog.get_logger(__name__)


def message_group_of(update: Mapping[str, Any]) -> str:
    """The conversation id of a raw update: its FIFO message group (`-` for one without a chat)."""
    head = _read_head(dict(update))
    return "-" if isinstance(head, Ignore) else head.conversation_id


class QueueingGateway(TelegramGateway):
    """Long polling into the queue (see the module); strangers and ignored updates stay here."""

    def _handle(self, update_id: int, route: Route, arrived: float, *, replay: bool = False) -> None:
        if is_durable(route):
            log.debug("update_enqueued", update_id=update_id)
            return
        super()._handle(update_id, route, arrived, replay=replay)


class QueueWorker(TelegramGateway):
    """Handles updates from the queue (see the module). Takes TelegramGateway's arguments; the
    ingress log must be an SqsIngressLog. It never polls Telegram nor touches its webhook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = args[0] if args else kwargs["settings"]
        self._queue = settings.queue
        ingress = self._ingress
        if not isinstance(ingress, SqsIngressLog):
            raise TypeError("a QueueWorker needs an SqsIngressLog")
        self._sqs = ingress
        self.last_receive_ok = time.monotonic()
        self.received = 0

    async def run(self) -> None:
        """Identify the bot, then receive and route until stopped, extending what is held."""
        if not await self._until_stopped(self._identify()):
            return
        async with asyncio.TaskGroup() as group:
            keeper = group.create_task(self._keep_hidden(), name="queue-visibility")
            try:
                await self._receive_forever()
            finally:
                keeper.cancel()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive while a receive succeeded within two long polls (and a margin)."""
        since = time.monotonic() - self.last_receive_ok
        ok = since < 2 * self._queue.wait_seconds + 10
        body = {"status": "ok" if ok else "queue_unreachable", "role": "worker", "held": self._sqs.held}
        return ok, body | {"actors": len(self._registry), "last_receive_s": round(since, 3)}

    async def _identify(self) -> None:
        bot = self._send_bot
        await self._retrying("getMe", bot.initialize)
        me = bot.bot
        self.identity = BotIdentity(me.id, me.username or "")
        log.info("queue_worker_started", bot_id=me.id, queue=self._queue.url)

    async def _until_stopped(self, work: Any) -> bool:
        from ops.aio import run_unless_set

        return await run_unless_set(work, self._stopping, name="queue-worker-start")

    async def _receive_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            room = self._queue.max_in_flight - self._sqs.held
            if room <= 0:
                await self._pause(0.05)  # every held turn is running: nothing to take on yet
                continue
            try:
                updates = await self._receive(room)
            except StoreError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("queue_receive_failed", attempt=failures, wait_s=round(delay, 3), error=repr(exc))
                await self._pause(delay)
                continue
            failures = 0
            self.last_receive_ok = time.monotonic()
            if not updates:
                continue
            self.received += len(updates)
            arrived = asyncio.get_running_loop().time()
            for update in updates:
                self._handle(update["update_id"], self._route_of(update), arrived)

    async def _receive(self, room: int) -> list[dict[str, Any]]:
        """One long poll, ended early (and its messages left to reappear) when the worker stops."""
        receive = asyncio.ensure_future(self._sqs.receive(room))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([receive, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            receive.cancel()
            await asyncio.wait([receive, stop])
        return [] if receive.cancelled() else receive.result()

    async def _keep_hidden(self) -> None:
        """Every third of the visibility timeout, hide what is held for another timeout."""
        interval = self._queue.visibility_timeout_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sqs.extend_held()
            except StoreError as exc:
                log.warning("queue_visibility_extension_failed", held=self._sqs.held, error=repr(exc))

    def _handle(self, update_id: int, route: Route, arrived: float, *, replay: bool = False) -> None:
        if not is_durable(route):
            # Enqueued by an older gateway, or routed differently here: nothing to answer.
            self._spawn(self.channel.done(update_id), f"queue-done:{update_id}")
            return
        super()._handle(update_id, route, arrived, replay=replay)
