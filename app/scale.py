"""Wiring of the webhook, the SQS ingress queue and the roles (`--role gateway|worker`; docs/scale.md).

Which parts run, by role and settings:

| role | no queue | with `INGRESS_QUEUE_URL` |
| --- | --- | --- |
| both (default) | polling or webhook gateway, routing to local actors | a gateway that enqueues, and a worker |
| gateway | (a configuration error) | a gateway that enqueues; no worker |
| worker | (a configuration error) | a worker; no gateway |

The gateway polls, or listens for a webhook when `TELEGRAM_WEBHOOK_URL` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Literal

from conf import ConfigError, Settings
from ops.backoff import Backoff

if TYPE_CHECKING:
    from telegram import Bot

    from actors.registry import ConversationRegistry
    from actors.supervisor import Child, Supervisor
    from channels.telegram.channel import TelegramChannel
    from channels.telegram.gateway import TelegramGateway
    from ops.health import HealthServer
    from stores import IngressLog
    from stores.sqs_ingress import SqsIngressLog

__all__ = ["ROLES", "Role", "check_queue", "check_role", "check_webhook", "open_queue_ingress", "start_edges"]

Role = Literal["both", "gateway", "worker"]
ROLES: tuple[Role, ...] = ("both", "gateway", "worker")

Health = Callable[[], tuple[bool, dict[str, Any]]]


def check_role(settings: Settings, role: Role) -> None:
    """ConfigError when the role needs a queue and there is none."""
    if role != "both" and not settings.queue.enabled:
        raise ConfigError("--role", f"{role} needs INGRESS_QUEUE_URL (an SQS FIFO queue between gateways and workers)")


async def open_queue_ingress(stack: AsyncExitStack, settings: Settings, backoff: Backoff) -> SqsIngressLog:
    """The SQS ingress log, opened on `stack` (closing it releases what this worker still holds)."""
    from channels.telegram.queued import message_group_of
    from stores.sqs_ingress import SqsIngressLog

    ingress = SqsIngressLog(settings.queue, message_group_of, backoff)
    await stack.enter_async_context(ingress)
    stack.push_async_callback(ingress.release)
    return ingress


def start_edges(
    settings: Settings,
    role: Role,
    root: Supervisor,
    registry: ConversationRegistry[Any],
    ingress: IngressLog,
    channel: TelegramChannel,
    bot: Bot,
    backoff: Backoff,
    stack: AsyncExitStack,
) -> tuple[TelegramGateway, HealthServer | None]:
    """Start the gateway and/or worker of `role` as permanent children of `root`, each stopped on
    `stack`, and `/healthz` (for all of them) unless its port is 0; return the first part and it."""
    common: dict[str, Any] = {"bot": bot, "channel": channel, "backoff": backoff}
    queued = settings.queue.enabled
    started: list[TelegramGateway] = []
    if role in ("both", "gateway"):
        gateway: TelegramGateway
        if settings.webhook.enabled:
            from channels.telegram.webhook import WebhookGateway

            gateway = WebhookGateway(settings, registry, ingress, enqueue_only=queued, **common)
        elif queued:
            from channels.telegram.queued import QueueingGateway

            gateway = QueueingGateway(settings, registry, ingress, **common)
        else:
            from channels.telegram.gateway import TelegramGateway

            gateway = TelegramGateway(settings, registry, ingress, **common)
        started.append(gateway)
    if queued and role in ("both", "worker"):
        from channels.telegram.queued import QueueWorker

        started.append(QueueWorker(settings, registry, ingress, **common))
    for part in started:
        name = f"telegram-{type(part).__name__}"
        child = root.start_child(name, part.run, restart="permanent", stop=part.stop)
        stack.push_async_callback(part.aclose)
        stack.push_async_callback(_stop_child, root, child)
    health = None
    if settings.health.port:
        from ops.health import HealthServer

        health = HealthServer(settings.health.host, settings.health.port, _all_healthy([p.health for p in started]))
        root.start_child("health", health.run, restart="permanent")
    return started[0], health


async def check_queue(settings: Settings) -> str:
    """`--check`'s probe of the queue: it exists and is FIFO; how many messages wait in it."""
    from stores.sqs_ingress import SqsIngressLog

    async with SqsIngressLog(settings.queue, lambda update: "-", Backoff(settings.backoff)) as queue:
        return f"FIFO queue reachable, {await queue.waiting()} message(s) waiting"


async def check_webhook(settings: Settings) -> str:
    """`--check`'s probe of the webhook: what Telegram has registered (the gateway sets it at start)."""
    from telegram import Bot

    async with Bot(settings.telegram.token, base_url=settings.telegram.api_base_url) as bot:
        info = await bot.get_webhook_info()
    if info.url != settings.webhook.url:
        return "not registered yet (the gateway registers it at start)"
    error = f"; Telegram's last error: {info.last_error_message}" if info.last_error_message else ""
    return f"registered, {info.pending_update_count} update(s) pending{error}"


def _all_healthy(checks: list[Health]) -> Health:
    def check() -> tuple[bool, dict[str, Any]]:
        results = [one() for one in checks]
        if len(results) == 1:
            return results[0]
        return all(ok for ok, _ in results), {"status": "ok" if all(ok for ok, _ in results) else "degraded"} | {
            f"part{index}": body for index, (_, body) in enumerate(results)
        }

    return check


async def _stop_child(supervisor: Supervisor, child: Child) -> None:
    supervisor.stop_child(child)
    await asyncio.shield(child.finished)
