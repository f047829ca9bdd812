"""IANA time zones by name, for the `TIMEZONE` setting and each user's `/timezone`."""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

__all__ = ["EXAMPLE_ZONE", "ZoneName", "find_zone"]

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


def _zone_key(raw: str) -> str:
    zone = find_zone(raw)
    if zone is None:
        raise ValueError(f"{raw!r} is not a known IANA time zone (e.g. {EXAMPLE_ZONE} or UTC)")
    return zone.key


ZoneName = Annotated[str, AfterValidator(_zone_key)]
"""A setting that names an IANA time zone, in any case; it is kept as the zone's own spelling."""
