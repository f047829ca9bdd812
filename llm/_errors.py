"""Translating provider failures into LLMRejected / LLMUnavailable, shared by both providers.

Nothing here imports a provider SDK: the providers pass in what they read off the SDK's exception.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from llm.base import LLMRejected, LLMUnavailable

__all__ = ["error_for_status", "parse_arguments", "parse_retry_after", "unavailable"]

# Statuses where the request itself is wrong (or the key is): retrying the same request cannot help.
_REJECTED = frozenset({400, 401, 403, 404, 413, 422})


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date), None if absent or bad."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            continue
        if value >= 0 and value == value:  # NaN is not a wait
            return value
    raw = headers.get("retry-after")
    if raw:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


def error_for_status(
    provider: str, status: int, body: object, headers: Mapping[str, str] | None
) -> LLMRejected | LLMUnavailable:
    """The error for an HTTP error status. The message names the provider, status and error type only:
    bodies can echo (masked) keys or prompt text, so they stay out of messages and logs."""
    kind = _error_type(body)
    message = f"{provider} answered HTTP {status}" + (f" ({kind})" if kind else "")
    if status in _REJECTED:
        return LLMRejected(message, status=status)
    # 408, 409, 429, 5xx and anything unexpected: the provider may well answer the same request later.
    return LLMUnavailable(message, status=status, retry_after=parse_retry_after(headers))


def _error_type(body: object) -> str:
    """`error.type` or `error.code` from either provider's error JSON, if it is a short identifier."""
    error: Any = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = body if isinstance(body, Mapping) else {}
    for key in ("type", "code"):
        value = error.get(key)
        if isinstance(value, str) and value.isidentifier() and len(value) <= 64:
            return value
    return ""


def unavailable(provider: str, what: str, status: int | None = None) -> LLMUnavailable:
    """A transport-level or malformed-response failure."""
    return LLMUnavailable(f"{provider}: {what}", status=status)


def parse_arguments(raw: str) -> dict[str, Any] | None:
    """Tool-call arguments as a dict; None when they are not a JSON object (the turn loop explains that back).

    An empty string means no arguments: some servers send "" for a tool without parameters.
    """
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
