"""Instants as the stores keep them: aware UTC datetimes, written as integer microseconds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "format_instant", "from_micros", "require_aware", "to_micros", "utc_now"]

Clock = Callable[[], datetime]
"""Returns the current time as an aware datetime. Stores take one, so tests choose the time."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


def require_aware(value: datetime, what: str) -> datetime:
    """`value` in UTC; ValueError for a naive datetime (whose instant nobody can know)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a time zone), not {value!r}")
    return value.astimezone(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch: exact, so stored instants compare equal to the original."""
    return (require_aware(value, "an instant") - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime of `to_micros`' result."""
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z` (microseconds only when there are any): stable for one instant."""
    return require_aware(value, "an instant").isoformat().replace("+00:00", "Z")
