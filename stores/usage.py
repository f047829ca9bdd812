"""Token usage per user and day, and the chat preferences (model, time zone): interfaces and the
in-memory backends."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date
from typing import TypeVar

from stores.base import _Resource

__all__ = ["InMemoryPreferenceStore", "InMemoryUsageStore", "PreferenceStore", "Usage", "UsageStore"]

_K = TypeVar("_K")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost: of one model call, or summed over a day or month."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_micros: int = 0
    """Cost in millionths of a US dollar (0 where no price is configured)."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{field.name} must be a non-negative int, not {value!r}")

    @property
    def tokens(self) -> int:
        """Input plus output tokens: what `DAILY_TOKEN_BUDGET` counts."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cost_micros + other.cost_micros,
        )


def check_day(day: str) -> str:
    """`day` if it is a `YYYY-MM-DD` date, else ValueError."""
    problem = f"a day is YYYY-MM-DD, not {day!r}"
    if not _DAY.match(day):
        raise ValueError(problem)
    try:
        date.fromisoformat(day)  # rejects 2026-02-30
    except ValueError:
        raise ValueError(problem) from None
    return day


def check_month(month: str) -> str:
    """`month` if it is `YYYY-MM`, else ValueError."""
    if not _MONTH.match(month):
        raise ValueError(f"a month is YYYY-MM, not {month!r}")
    return month


class UsageStore(_Resource):
    """Counters per user and day. `day` is a date in the user's zone (the caller computes it), so a
    user's day and budget follow their zone; `month` sums the days that start with it.

    Bad day or month strings and negative counts raise ValueError.
    """

    async def add(self, user_id: int, day: str, usage: Usage) -> None:
        """Add `usage` to the user's counters of `day`, durably and atomically (concurrent adds
        from several workers all count)."""
        await self._add(user_id, check_day(day), usage)

    async def day(self, user_id: int, day: str) -> Usage:
        """The user's total of `day` (zero if nothing was added)."""
        return await self._day(user_id, check_day(day))

    async def month(self, user_id: int, month: str) -> Usage:
        """The user's total over the days of `month` (`YYYY-MM`)."""
        return await self._month(user_id, check_month(month))

    async def all_users_month(self, month: str) -> dict[int, Usage]:
        """Every user's total of `month`, by user id (for the bot owner's overview)."""
        return await self._all_users_month(check_month(month))

    @abstractmethod
    async def _add(self, user_id: int, day: str, usage: Usage) -> None:
        """`add` with the day checked."""

    @abstractmethod
    async def _day(self, user_id: int, day: str) -> Usage:
        """`day` with the day checked."""

    @abstractmethod
    async def _month(self, user_id: int, month: str) -> Usage:
        """`month` with the month checked."""

    @abstractmethod
    async def _all_users_month(self, month: str) -> dict[int, Usage]:
        """`all_users_month` with the month checked."""


class PreferenceStore(_Resource):
    """Choices users make in the chat: the model per conversation, the time zone per user.

    Values are stored as given (the commands check them against `LLM_MODELS` and `zoneinfo`);
    None means "not set" (the configured default applies). `set_*` are durable on return.
    """

    @abstractmethod
    async def model(self, conversation_id: str) -> str | None:
        """The model chosen for the conversation, or None."""

    @abstractmethod
    async def set_model(self, conversation_id: str, model: str | None) -> None:
        """Choose the conversation's model (None: back to the default)."""

    @abstractmethod
    async def timezone(self, user_id: int) -> str | None:
        """The user's IANA time zone, or None."""

    @abstractmethod
    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        """Set the user's time zone (None: back to the default)."""


class InMemoryUsageStore(UsageStore):
    """Counters in a dict, lost at exit."""

    def __init__(self) -> None:
        self._days: dict[tuple[int, str], Usage] = {}

    async def _add(self, user_id: int, day: str, usage: Usage) -> None:
        key = (user_id, day)
        self._days[key] = self._days.get(key, Usage()) + usage

    async def _day(self, user_id: int, day: str) -> Usage:
        return self._days.get((user_id, day), Usage())

    async def _month(self, user_id: int, month: str) -> Usage:
        return sum_days(usage for (user, day), usage in self._days.items() if user == user_id and day[:7] == month)

    async def _all_users_month(self, month: str) -> dict[int, Usage]:
        return sum_by_user((user, usage) for (user, day), usage in self._days.items() if day[:7] == month)


def sum_days(usages: Iterable[Usage]) -> Usage:
    """The sum of `usages` (zero for none)."""
    total = Usage()
    for usage in usages:
        total += usage
    return total


def sum_by_user(items: Iterable[tuple[int, Usage]]) -> dict[int, Usage]:
    """The sum of each user's usages."""
    totals: dict[int, Usage] = {}
    for user_id, usage in items:
        totals[user_id] = totals.get(user_id, Usage()) + usage
    return totals


class InMemoryPreferenceStore(PreferenceStore):
    """Preferences in dicts, lost at exit."""

    def __init__(self) -> None:
        self._models: dict[str, str] = {}
        self._zones: dict[int, str] = {}

    async def model(self, conversation_id: str) -> str | None:
        """The model chosen for the conversation, or None."""
        return self._models.get(conversation_id)

    async def set_model(self, conversation_id: str, model: str | None) -> None:
        """Choose the conversation's model (None: back to the default)."""
        _set(self._models, conversation_id, model)

    async def timezone(self, user_id: int) -> str | None:
        """The user's IANA time zone, or None."""
        return self._zones.get(user_id)

    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        """Set the user's time zone (None: back to the default)."""
        _set(self._zones, user_id, timezone)


def _set(values: dict[_K, str], key: _K, value: str | None) -> None:
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
