"""When reminders fire: reading a time the model wrote, repeat rules, and their next occurrences.

Repeat rules are computed on the wall clock of the user's zone, so a reminder at 09:00 stays at
09:00 across daylight-saving changes. A rule is stored in a canonical form that carries its wall
time (`daily 09:00`, `weekdays 09:00`, `weekly mon 09:00`, `monthly 31 09:00`, `cron 0 9 * * 1-5`),
made once from what the model asked for and the first due time, so that later occurrences never
drift (a 02:30 that a spring-forward night skips fires at 03:30 that night, and at 02:30 again the
next). A wall time that a fall-back night repeats fires once, at its first pass.

Every error here is a `ScheduleError` whose message is written for the model: what was wrong and
what to send instead.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from conf.zones import find_zone

__all__ = [
    "RepeatRule",
    "ScheduleError",
    "describe_repeat",
    "first_occurrence",
    "missed_between",
    "next_occurrence",
    "parse_at",
    "parse_repeat",
    "parse_zone",
    "zone_or_utc",
]

RepeatKind = Literal["daily", "weekdays", "weekly", "monthly", "cron"]

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WORDS = ("daily", "weekdays", "weekly", "monthly")
_ZONE_SUFFIX = re.compile(
    # An ISO time followed by a zone name: `... Europe/Berlin` or RFC 9557's `...[Europe/Berlin]`.
    r"^(?P<time>.+?)\s*(?:\[(?P<bracketed>[^\]]+)\]|\s(?P<spaced>[A-Za-z][\w+\-]*(?:/[\w+\-]+)*))$"
)
_MAX_SEARCH_DAYS = 8
_MAX_SEARCH_MONTHS = 13


class ScheduleError(ValueError):
    """A time, zone or repeat rule that cannot be used; the message tells the model what to send."""


@dataclass(frozen=True, slots=True)
class RepeatRule:
    """A repeat rule in its canonical form (see the module docstring)."""

    kind: RepeatKind
    wall: time | None
    """The local time of day (None for cron, whose expression holds it)."""
    day: int | None = None
    """Weekly: the weekday (0 = Monday); monthly: the day of the month (1-31)."""
    cron: str = ""

    def __str__(self) -> str:
        if self.kind == "cron":
            return f"cron {self.cron}"
        wall = _format_wall(self.wall)
        if self.kind == "weekly":
            return f"weekly {_WEEKDAYS[self.day or 0]} {wall}"
        if self.kind == "monthly":
            return f"monthly {self.day} {wall}"
        return f"{self.kind} {wall}"


def parse_zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (`Europe/Berlin`, `UTC`, in any case); ScheduleError if there is none by that name."""
    zone = find_zone(name)
    if zone is None:
        raise ScheduleError(
            f"Unknown time zone {name!r}: use an IANA zone name such as 'Europe/Berlin' or 'America/New_York'."
        )
    return zone


def zone_or_utc(name: str) -> ZoneInfo:
    """The zone `name`, or UTC if there is none by that name (a stored zone that zone data no longer
    knows must not stop a reminder from firing)."""
    try:
        return parse_zone(name)
    except ScheduleError:
        return ZoneInfo("UTC")


def parse_at(text: str, zone: ZoneInfo) -> datetime:
    """The instant `text` names, aware, in UTC.

    `text` is ISO 8601 (`2026-05-01T09:00`, with seconds or not, `T` or a space): with an offset
    (`+02:00`, `Z`) it is that instant; with a zone name after it (`2026-05-01T09:00 Europe/Berlin`,
    or `[Europe/Berlin]`) it is that wall time there; otherwise it is the wall time in `zone`.
    """
    raw = text.strip()
    named: ZoneInfo | None = None
    parsed = _iso(raw)
    suffix = _ZONE_SUFFIX.match(raw) if parsed is None else None
    if suffix is not None and (parsed := _iso(suffix.group("time").strip())) is not None:
        # Only a readable time makes the rest a zone name, so "tomorrow at nine" is not zone "nine".
        named = parse_zone(suffix.group("bracketed") or suffix.group("spaced"))
        raw = suffix.group("time").strip()
    if parsed is None:
        raise ScheduleError(
            f"Cannot read the time {text!r}: write it as ISO 8601, e.g. '2026-05-01T09:00' (in the user's "
            "time zone) or '2026-05-01T09:00+02:00'."
        )
    if len(raw) <= len("2026-05-01"):
        raise ScheduleError(f"The time {text!r} has a date but no time of day: add one, e.g. '{raw}T09:00'.")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=named or zone)
    return parsed.astimezone(UTC)


def parse_repeat(text: str | None, first: datetime, zone: ZoneInfo) -> RepeatRule | None:
    """The rule `text` asks for, anchored at the first due time `first` (its wall time and day in
    `zone`); None for no repeat. ScheduleError for a rule that is not one of the forms."""
    if text is None or not text.strip():
        return None
    words = text.strip().split()
    head = words[0].lower()
    local = first.astimezone(zone)
    if len(words) == 1 and head in _WORDS:
        wall = local.time().replace(microsecond=0, tzinfo=None)
        day = {"weekly": local.weekday(), "monthly": local.day}.get(head)
        return RepeatRule(head, wall, day)  # type: ignore[arg-type]  # head is one of _WORDS
    if head == "cron":
        words = words[1:]
    elif head in _WORDS:
        return _parse_canonical(text)
    if len(words) != 5:
        raise ScheduleError(_repeat_help(text))
    expression = " ".join(words)
    # Imported here: croniter (and dateutil) cost 2.6 MB that a process without cron rules saves.
    from croniter import CroniterError, croniter

    try:
        valid = croniter.is_valid(expression)
    except CroniterError:
        valid = False
    if not valid:
        raise ScheduleError(_repeat_help(text))
    rule = RepeatRule("cron", None, cron=expression)
    if next_occurrence(str(rule), zone, first) is None:
        raise ScheduleError(f"The cron expression {expression!r} never fires (no such date): check its day and month.")
    return rule


def first_occurrence(rule: RepeatRule | None, at: datetime, zone: ZoneInfo) -> datetime:
    """When a reminder asked for at `at` first fires: `at` itself if it is one of the rule's
    occurrences, else (weekdays asked for on a Saturday, a cron expression) the rule's first
    occurrence after it."""
    if rule is None:
        return at
    local = at.astimezone(zone)
    if rule.kind != "cron" and local.time().replace(tzinfo=None) == rule.wall and _day_matches(rule, local.date()):
        return at
    found = next_occurrence(str(rule), zone, at - timedelta(microseconds=1))
    if found is None:  # parse_repeat checked the rule fires; this is a rule read back from a store
        raise ScheduleError(f"The repeat rule {rule} never fires.")
    return found


def next_occurrence(rule: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The rule's first occurrence strictly after `after`, in UTC; None if it has none (a cron
    expression naming a date that never comes). ValueError for a rule that is not canonical."""
    parsed = _parse_canonical(rule)
    after = after.astimezone(UTC)
    if parsed.kind == "cron":
        return _next_cron(parsed.cron, zone, after)
    assert parsed.wall is not None
    local = after.astimezone(zone)
    if parsed.kind == "monthly":
        year, month = local.year, local.month
        for _ in range(_MAX_SEARCH_MONTHS):
            day = min(parsed.day or 1, calendar.monthrange(year, month)[1])
            candidate = _instant(date(year, month, day), parsed.wall, zone)
            if candidate > after:
                return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return None  # pragma: no cover - every month has a day 1..28
    day_of = local.date()
    for offset in range(_MAX_SEARCH_DAYS):
        candidate_day = day_of + timedelta(days=offset)
        if _day_matches(parsed, candidate_day):
            candidate = _instant(candidate_day, parsed.wall, zone)
            if candidate > after:
                return candidate
    return None  # pragma: no cover - every rule but cron matches within a week


def missed_between(rule: str, zone: ZoneInfo, first: datetime, until: datetime, *, cap: int = 100) -> int:
    """How many occurrences come strictly after `first` and at or before `until` (at most `cap`)."""
    count = 0
    moment: datetime | None = first
    while count < cap:
        moment = next_occurrence(rule, zone, moment) if moment is not None else None
        if moment is None or moment > until:
            break
        count += 1
    return count


def describe_repeat(rule: str | None) -> str:
    """The rule in words for people: `every day at 09:00`, `on weekdays at 09:00`, ..."""
    if rule is None:
        return "once"
    try:
        parsed = _parse_canonical(rule)
    except ValueError:
        return rule
    wall = _format_wall(parsed.wall)
    match parsed.kind:
        case "daily":
            return f"every day at {wall}"
        case "weekdays":
            return f"on weekdays at {wall}"
        case "weekly":
            return f"every {_WEEKDAY_NAMES[parsed.day or 0]} at {wall}"
        case "monthly":
            shorter = " (the last day in shorter months)" if (parsed.day or 1) > 28 else ""
            return f"monthly on day {parsed.day} at {wall}{shorter}"
        case _:
            return f"on the cron schedule {parsed.cron}"


# -- helpers -----------------------------------------------------------------------------------------


def _parse_canonical(rule: str) -> RepeatRule:
    words = rule.strip().lower().split()
    try:
        if words[0] == "cron" and len(words) == 6:
            return RepeatRule("cron", None, cron=" ".join(words[1:]))
        if words[0] in ("daily", "weekdays") and len(words) == 2:
            return RepeatRule(words[0], _parse_wall(words[1]))  # type: ignore[arg-type]  # checked just above
        if words[0] == "weekly" and len(words) == 3:
            return RepeatRule("weekly", _parse_wall(words[2]), _WEEKDAYS.index(words[1]))
        if words[0] == "monthly" and len(words) == 3 and 1 <= int(words[1]) <= 31:
            return RepeatRule("monthly", _parse_wall(words[2]), int(words[1]))
    except (IndexError, ValueError):
        pass
    raise ScheduleError(_repeat_help(rule))


def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None


def _parse_wall(text: str) -> time:
    return time.fromisoformat(text)


def _format_wall(wall: time | None) -> str:
    if wall is None:
        return ""
    return wall.strftime("%H:%M:%S" if wall.second else "%H:%M")


def _repeat_help(text: str) -> str:
    return (
        f"Cannot read the repeat rule {text!r}: use 'daily', 'weekdays', 'weekly', 'monthly' (at the time of "
        "day of 'at', and its weekday or day of the month), or a five-field cron expression such as "
        "'0 9 * * 1-5' (minute hour day-of-month month day-of-week, in the user's time zone)."
    )


def _day_matches(rule: RepeatRule, day: date) -> bool:
    if rule.kind == "weekdays":
        return day.weekday() < 5
    if rule.kind == "weekly":
        return day.weekday() == rule.day
    if rule.kind == "monthly":
        return day.day == min(rule.day or 1, calendar.monthrange(day.year, day.month)[1])
    return True


def _instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The wall time on `day` in `zone`, in UTC: a skipped wall time (spring forward) lands after
    the gap, a repeated one (fall back) at its first pass (fold 0)."""
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def _next_cron(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    # croniter walks naive wall-clock times: the wall times of the user's zone, localised one by one.
    start = after.astimezone(zone).replace(tzinfo=None)
    try:
        walk = croniter(expression, start)
        for _ in range(4):  # a repeated hour can give a wall time at or before `after` once or twice
            wall: datetime = walk.get_next(datetime)
            candidate = wall.replace(tzinfo=zone).astimezone(UTC)
            if candidate > after:
                return candidate
    except (CroniterBadDateError, CroniterBadCronError):
        return None
    return None  # pragma: no cover - a cron expression moves past any hour within four steps
