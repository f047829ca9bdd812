"""Each user's time zone: their own (`/timezone`, kept in the preference store), else the default."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import structlog

from stores.usage import PreferenceStore
from tools.schedule import ScheduleError, parse_zone

__all__ = ["UserZones"]

log = structlog.get_logger(__name__)


class UserZones:
    """Looks up the zone a user's times are read and shown in.

    A user without a zone of their own, or without a user id (the console), gets `default` (the
    `TIMEZONE` setting). A stored name that zone data no longer knows falls back to the default too,
    and is logged: it must not stop the user's reminders.
    """

    def __init__(self, preferences: PreferenceStore | None, default: ZoneInfo) -> None:
        self._preferences = preferences
        self.default = default

    async def zone_of(self, user_id: int | None) -> ZoneInfo:
        """The user's zone."""
        if user_id is None or self._preferences is None:
            return self.default
        name = await self._preferences.timezone(user_id)
        if not name:
            return self.default
        try:
            return parse_zone(name)
        except ScheduleError:
            log.warning("user_timezone_unknown", user_id=user_id, timezone=name)
            return self.default
