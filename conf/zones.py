"""IANA time zones by name, for the `TIMEZONE` setting and each user's `/timezone`."""

from __future__ import annotations

import functools
import re
import zoneinfo
from zoneinfo import ZoneInfo

__all__ = ["EXAMPLE_ZONE", "find_zone"]

EXAMPLE_ZONE = "Europe/Berlin"
"""The example a refusal gives."""

# Zone names are ASCII words joined by '/': nothing else can name a file in the time zone database.
_SHAPE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
_MAX_LENGTH = 64


def find_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone named `name` (surrounding space and case ignored: `europe/berlin` is
    Europe/Berlin), or None if there is none by that name."""
    text = name.strip()
    if not text or len(text) > _MAX_LENGTH or not _SHAPE.match(text):
        return None
    try:
        return ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass  # perhaps only the case differs
    key = _keys_by_folded_name().get(text.casefold())
    return ZoneInfo(key) if key is not None else None


@functools.cache
def _keys_by_folded_name() -> dict[str, str]:
    # Reading the database's index takes tens of milliseconds: once per process, on first need.
    return {key.casefold(): key for key in zoneinfo.available_timezones()}
