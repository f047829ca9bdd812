"""Reading reminder times and repeat rules, and their occurrences across days, months and DST."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.schedule import (
    ScheduleError,
    describe_repeat,
    first_occurrence,
    missed_between,
    next_occurrence,
    parse_at,
    parse_repeat,
    parse_zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-01T09:00", utc(2026, 5, 1, 7, 0)),  # the user's zone (Berlin, summer time)
        ("2026-05-01 09:00:30", utc(2026, 5, 1, 7, 0, 30)),
        ("2026-01-15T09:00", utc(2026, 1, 15, 8, 0)),  # winter time
        ("2026-05-01T09:00+05:30", utc(2026, 5, 1, 3, 30)),
        ("2026-05-01T09:00Z", utc(2026, 5, 1, 9, 0)),
        ("2026-05-01T09:00 America/New_York", utc(2026, 5, 1, 13, 0)),
        ("2026-05-01T09:00[America/New_York]", utc(2026, 5, 1, 13, 0)),
        ("  2026-05-01T09:00 UTC ", utc(2026, 5, 1, 9, 0)),
    ],
)
def test_at_is_iso_8601_with_an_offset_a_zone_or_in_the_users_zone(text: str, expected: datetime) -> None:
    assert parse_at(text, BERLIN) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("tomorrow at nine", "Cannot read the time"),
        ("2026-05-01", "no time of day"),
        ("2026-13-01T09:00", "Cannot read the time"),
        ("2026-05-01T09:00 Europe/Atlantis", "Unknown time zone 'Europe/Atlantis'"),
        ("2026-05-01T09:00[../../etc/passwd]", "Unknown time zone"),
    ],
)
def test_an_unreadable_time_or_zone_is_an_error_the_model_can_fix(text: str, complaint: str) -> None:
    with pytest.raises(ScheduleError, match=complaint) as raised:
        parse_at(text, BERLIN)
    assert "e.g." in str(raised.value) or "such as" in str(raised.value)


def test_zones_are_iana_names() -> None:
    assert parse_zone(" Asia/Tokyo ") == ZoneInfo("Asia/Tokyo")
    for bad in ("", "Berlin", "/etc/localtime", "Europe/../UTC"):
        with pytest.raises(ScheduleError, match="IANA"):
            parse_zone(bad)


def test_repeat_words_take_their_time_and_day_from_the_first_due_time() -> None:
    first = utc(2026, 4, 30, 7, 30)  # Thursday 09:30 in Berlin
    assert str(parse_repeat("daily", first, BERLIN)) == "daily 09:30"
    assert str(parse_repeat(" Weekdays ", first, BERLIN)) == "weekdays 09:30"
    assert str(parse_repeat("weekly", first, BERLIN)) == "weekly thu 09:30"
    assert str(parse_repeat("monthly", first, BERLIN)) == "monthly 30 09:30"
    assert str(parse_repeat("0 9 * * 1-5", first, BERLIN)) == "cron 0 9 * * 1-5"
    assert str(parse_repeat("cron */15 * * * *", first, BERLIN)) == "cron */15 * * * *"
    assert str(parse_repeat("weekly mon 08:00", first, BERLIN)) == "weekly mon 08:00"  # canonical, as listed
    assert parse_repeat(None, first, BERLIN) is None
    assert parse_repeat("  ", first, BERLIN) is None


@pytest.mark.parametrize("text", ["hourly", "every day", "0 9 * *", "0 9 * * * *", "61 9 * * *", "0 9 * * 8", "x y z"])
def test_a_bad_repeat_rule_is_an_error_naming_the_forms(text: str) -> None:
    with pytest.raises(ScheduleError, match="'daily', 'weekdays', 'weekly', 'monthly'"):
        parse_repeat(text, utc(2026, 5, 1, 7, 0), BERLIN)


def test_a_cron_rule_that_never_fires_is_refused() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        parse_repeat("0 9 30 2 *", utc(2026, 5, 1, 7, 0), BERLIN)


def test_daily_at_nine_stays_at_nine_across_both_dst_changes() -> None:
    rule = "daily 09:00"
    moment = utc(2026, 3, 27, 8, 0)  # Friday 09:00 CET
    walls = []
    for _ in range(3):
        moment = next_occurrence(rule, BERLIN, moment) or moment
        walls.append(moment.astimezone(BERLIN).strftime("%d %H:%M %Z"))
    assert walls == ["28 09:00 CET", "29 09:00 CEST", "30 09:00 CEST"]
    assert next_occurrence(rule, BERLIN, utc(2026, 10, 24, 7, 0)) == utc(2026, 10, 25, 8, 0)  # CET again


def test_a_wall_time_skipped_by_spring_forward_fires_after_the_gap_then_returns() -> None:
    rule = "daily 02:30"
    night = next_occurrence(rule, BERLIN, utc(2026, 3, 28, 12, 0))
    assert night is not None
    assert night.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    after = next_occurrence(rule, BERLIN, night)
    assert after is not None
    assert after.astimezone(BERLIN).strftime("%d %H:%M") == "30 02:30"


def test_a_wall_time_repeated_by_fall_back_fires_once() -> None:
    for rule in ("daily 02:30", "cron 30 2 * * *"):
        first = next_occurrence(rule, BERLIN, utc(2026, 10, 24, 12, 0))
        assert first == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first pass
        second = next_occurrence(rule, BERLIN, first)
        assert second is not None
        assert second.astimezone(BERLIN).strftime("%d %H:%M") == "26 02:30"


def test_cron_runs_on_the_users_wall_clock() -> None:
    monday = next_occurrence("cron 0 9 * * 1-5", NEW_YORK, utc(2026, 3, 7, 0, 0))  # a Saturday
    assert monday == utc(2026, 3, 9, 13, 0)  # 09:00 EDT, the day after the US change
    quarter = next_occurrence("cron */15 * * * *", BERLIN, utc(2026, 5, 1, 7, 0))
    assert quarter == utc(2026, 5, 1, 7, 15)


def test_weekdays_weekly_and_monthly() -> None:
    friday = utc(2026, 5, 1, 7, 0)  # Friday 09:00 Berlin
    assert next_occurrence("weekdays 09:00", BERLIN, friday) == utc(2026, 5, 4, 7, 0)
    assert next_occurrence("weekly fri 09:00", BERLIN, friday) == utc(2026, 5, 8, 7, 0)
    assert next_occurrence("weekly sun 10:00", BERLIN, friday) == utc(2026, 5, 3, 8, 0)
    # The 31st falls on the last day of shorter months, then on the 31st again.
    months = []
    moment = utc(2026, 1, 31, 8, 0)
    for _ in range(3):
        moment = next_occurrence("monthly 31 09:00", BERLIN, moment) or moment
        months.append(moment.astimezone(BERLIN).date().isoformat())
    assert months == ["2026-02-28", "2026-03-31", "2026-04-30"]


def test_the_first_firing_is_at_unless_the_rule_skips_that_day() -> None:
    saturday = utc(2026, 5, 2, 7, 0)
    assert first_occurrence(None, saturday, BERLIN) == saturday
    daily = parse_repeat("daily", saturday, BERLIN)
    assert first_occurrence(daily, saturday, BERLIN) == saturday
    weekdays = parse_repeat("weekdays", saturday, BERLIN)
    assert first_occurrence(weekdays, saturday, BERLIN) == utc(2026, 5, 4, 7, 0)
    cron = parse_repeat("30 9 * * *", saturday, BERLIN)
    assert first_occurrence(cron, saturday, BERLIN) == utc(2026, 5, 2, 7, 30)
    exact = parse_repeat("0 9 * * *", saturday, BERLIN)
    assert first_occurrence(exact, saturday, BERLIN) == saturday  # `at` itself is an occurrence


def test_missed_occurrences_are_counted_up_to_a_cap() -> None:
    first = utc(2026, 5, 1, 7, 0)
    assert missed_between("daily 09:00", BERLIN, first, first + timedelta(days=3, hours=1)) == 3
    assert missed_between("daily 09:00", BERLIN, first, first + timedelta(hours=23)) == 0
    assert missed_between("cron * * * * *", BERLIN, first, first + timedelta(days=7), cap=100) == 100


def test_rules_read_as_words() -> None:
    assert describe_repeat(None) == "once"
    assert describe_repeat("daily 09:00") == "every day at 09:00"
    assert describe_repeat("weekdays 07:45:30") == "on weekdays at 07:45:30"
    assert describe_repeat("weekly mon 09:00") == "every Monday at 09:00"
    assert describe_repeat("monthly 31 09:00") == "monthly on day 31 at 09:00 (the last day in shorter months)"
    assert describe_repeat("cron 0 9 * * 1-5") == "on the cron schedule 0 9 * * 1-5"


ZONES = st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"])
RULES = st.one_of(
    st.builds(lambda h, m: f"daily {h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    st.builds(lambda h, m: f"weekdays {h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    st.builds(lambda d, h: f"weekly {d} {h:02d}:30", st.sampled_from(["mon", "wed", "sun"]), st.integers(0, 23)),
    st.builds(lambda d, h: f"monthly {d} {h:02d}:00", st.integers(1, 31), st.integers(0, 23)),
    st.sampled_from(["cron 0 9 * * 1-5", "cron 30 2 * * *", "cron */20 * * * *", "cron 0 0 1 * *"]),
)


@settings(max_examples=200, deadline=None)
@given(
    rule=RULES,
    zone_name=ZONES,
    start=st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
)
def test_occurrences_always_move_forward_and_keep_their_wall_time(rule: str, zone_name: str, start: datetime) -> None:
    zone = ZoneInfo(zone_name)
    moment = start
    for _ in range(5):
        following = next_occurrence(rule, zone, moment)
        assert following is not None
        assert following > moment
        assert following.tzinfo == UTC
        words = rule.split()
        if words[0] != "cron":
            wall = time.fromisoformat(words[-1])
            local = following.astimezone(zone)
            # The wall time, or just after a gap that swallowed it (never earlier, never a day off).
            shifted = datetime.combine(local.date(), wall) <= local.replace(tzinfo=None)
            assert local.time() == wall or (
                shifted and local.replace(tzinfo=None) - datetime.combine(local.date(), wall) <= timedelta(hours=1)
            )
        moment = following
