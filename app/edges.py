"""The edges of the system users talk to: Telegram (its clients, the flood-controlled sender, streamed
previews, files) or the terminal; built before the actors that reply through them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from conf import Settings
from ops.backoff import Backoff
from stores import IngressLog

if TYPE_CHECKING:
    from telegram import Bot

    from actors.media import ConversationMedia
    from channels.console import ConsoleChannel
    from channels.telegram.gateway import TelegramChannel
    from ops.metrics import Metrics

__all__ = ["ConsoleEdge", "Edge", "TelegramEdge", "open_edge"]


@dataclass(frozen=True, slots=True)
class TelegramEdge:
    """Telegram's side of the system, built before the actors that reply through it."""

    channel: TelegramChannel
    bot: Bot
    """The sending client, which the gateway also identifies the bot with."""
    media: ConversationMedia | None = None


@dataclass(frozen=True, slots=True)
class ConsoleEdge:
    """The terminal's side of the system."""

    channel: ConsoleChannel


Edge = TelegramEdge | ConsoleEdge
"""The side of the system users talk to."""


async def open_edge(
    stack: AsyncExitStack,
    settings: Settings,
    mode: Literal["telegram", "console"],
    ingress: IngressLog,
    backoff: Backoff,
    metrics: Metrics | None,
) -> Edge:
    """The edge of `mode`, its clients closed by `stack`."""
    if mode == "console":
        from channels.console import ConsoleChannel

        return ConsoleEdge(ConsoleChannel())
    from channels.telegram.client import TelegramClient
    from channels.telegram.gateway import TelegramChannel
    from channels.telegram.sender import Rate, TelegramSender

    telegram = settings.telegram
    client = await stack.enter_async_context(
        TelegramClient(telegram, pool_size=telegram.send_connections, read_timeout=telegram.send_timeout_seconds)
    )
    # "typing..." has connections of its own: a chat action must never delay a reply.
    actions = await stack.enter_async_context(TelegramClient(telegram, pool_size=2, read_timeout=5.0))
    overall = telegram.overall_messages_per_second
    sender = TelegramSender(
        client.bot,
        backoff,
        overall_rate=Rate(overall, 1.0) if overall else None,
        group_rate=Rate(telegram.group_messages_per_minute, 60.0),
        max_concurrent_sends=telegram.send_connections,
        typing_delay_s=telegram.typing_delay_seconds,
        on_retry=partial(_count_telegram_retry, metrics) if metrics is not None else None,
        typing_bot=actions.bot,
    )
    stack.push_async_callback(sender.aclose)
    streams = None
    if telegram.stream_replies:
        from channels.telegram.streaming import StreamTiming, TelegramStreams

        timing = StreamTiming(
            draft_interval_s=telegram.draft_interval_seconds, edit_interval_s=telegram.edit_interval_seconds
        )
        # Previews have connections of their own too: a draft must never delay an answer.
        previews = TelegramClient(telegram, pool_size=timing.connections, read_timeout=timing.request_timeout_s)
        streams = TelegramStreams(sender, (await stack.enter_async_context(previews)).bot, timing)
        stack.push_async_callback(streams.aclose)
    from app.media import open_media

    media = await open_media(stack, settings, client.bot, sender, backoff)
    return TelegramEdge(TelegramChannel(sender, ingress, streams), client.bot, media)


def _count_telegram_retry(metrics: Metrics, wait_s: float, reason: str) -> None:
    metrics.telegram_retry(wait_s, method="sendMessage", reason=reason)
