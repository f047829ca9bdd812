"""What operators see: JSON logging and redaction, EMF metrics, `/healthz`, memory tuning; and what
every layer shares: the one backoff policy (`ops.backoff`) and small asyncio building blocks
(`ops.aio`: keyed locks, waiting for an event or a timeout)."""

from __future__ import annotations
