"""Settings of running past one process: the webhook ingress and the SQS FIFO ingress queue.

Kept apart from `conf/settings.py` (which holds the rest); `Settings.webhook` and `Settings.queue`
are these. `check_scale` holds the rules that join them to the other settings (a queue needs
every shared state in DynamoDB; a webhook needs its secret).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from conf._types import OptionalHttpUrl, SettingsModel

if TYPE_CHECKING:
    from conf.settings import Settings

__all__ = ["QueueSettings", "WebhookSettings", "check_scale"]

_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class WebhookSettings(SettingsModel):
    """Receiving updates by webhook instead of long polling (an empty `url` means polling)."""

    url: OptionalHttpUrl = ""
    """Given to Telegram's setWebhook; this process serves its path on `port`, in plain HTTP
    (TLS is the load balancer's or a reverse proxy's)."""
    secret: str = ""
    """Telegram sends it as `X-Telegram-Bot-Api-Secret-Token`; a request without it gets 401."""
    host: str = "0.0.0.0"  # noqa: S104 - behind a proxy or in a container the listener must be reachable
    port: int = Field(8443, ge=0, le=65535)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """A request body longer than this is refused (413) unread: updates are a few KB."""
    max_connections: int = Field(40, ge=1, le=100)
    """How many requests at once Telegram may make (setWebhook's max_connections)."""

    @property
    def enabled(self) -> bool:
        """True when updates come by webhook."""
        return bool(self.url)

    @property
    def path(self) -> str:
        """The URL's path, which the listener serves (`/` when the URL has none)."""
        return urlsplit(self.url).path or "/"


class QueueSettings(SettingsModel):
    """The SQS FIFO queue that carries updates from gateways to workers (empty `url`: in-process)."""

    url: OptionalHttpUrl = ""
    endpoint_url: OptionalHttpUrl = ""
    region: str = ""
    visibility_timeout_seconds: int = Field(30, ge=1, le=43200)
    """How long a received message stays hidden from other workers; extended while its turn runs,
    so it is how soon another worker takes over from one that died."""
    wait_seconds: int = Field(20, ge=0, le=20)
    """Long-poll wait of ReceiveMessage."""
    max_in_flight: int = Field(64, ge=1, le=10000)
    """Messages a worker holds at once (received, not yet answered); it receives no more past this."""

    @property
    def enabled(self) -> bool:
        """True when updates go through the queue."""
        return bool(self.url)

    @field_validator("url")
    @classmethod
    def _fifo(cls, raw: str) -> str:
        if raw and not raw.rstrip("/").endswith(".fifo"):
            raise ValueError(f"{raw!r} is not a FIFO queue (its name must end in .fifo)")
        return raw


def check_scale(settings: Settings) -> None:
    """ConfigError if the webhook or queue settings do not fit the rest (see the module)."""
    from conf.settings import ConfigError

    webhook = settings.webhook
    if webhook.enabled and not webhook.secret:
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "is required with TELEGRAM_WEBHOOK_URL")
    if webhook.secret and not _SECRET.fullmatch(webhook.secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "must be 1-256 characters of A-Z a-z 0-9 _ -")
    if settings.queue.enabled and settings.store.backend != "dynamodb":
        raise ConfigError(
            "INGRESS_QUEUE_URL",
            f"needs STORE_BACKEND=dynamodb (is {settings.store.backend!r}): every worker must share "
            "conversations, facts, reminders and usage",
        )
