"""The period math (rankings.periods): local midnights across DST, ISO weeks, months, the
kept periods, the close rule. Pure: no service."""

from datetime import date, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from rankings.period_upkeep import period_close_due
from rankings.periods import (
    Period,
    PeriodMalformed,
    PeriodRule,
    PeriodUnknown,
    period_after,
    period_at,
    period_before,
    period_parse,
    period_readable,
    periods_kept,
)

BERLIN = "Europe/Berlin"
MS = 1000
SECOND = 1_000_000


def micros(text: str, zone: str = "UTC") -> int:
    """An instant written as local time in ``zone``, in µs since the epoch."""
    moment = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp()) * SECOND + moment.microsecond


def local_midnight(day: date, zone: str = BERLIN) -> int:
    return micros(day.isoformat() + "T00:00:00", zone)


# --- the period math -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "key", "starts", "ends", "hours"),
    [
        # The last instant of a day counts in that day, the next one in the next day.
        ("2026-11-28T23:59:59.999999", "2026-11-28", "2026-11-28T00:00:00", "2026-11-29T00:00:00", 24),
        ("2026-11-29T00:00:00", "2026-11-29", "2026-11-29T00:00:00", "2026-11-30T00:00:00", 24),
        # Berlin springs forward on 2026-03-29 (23 hours) and falls back on 2026-10-25 (25).
        ("2026-03-29T12:00:00", "2026-03-29", "2026-03-29T00:00:00", "2026-03-30T00:00:00", 23),
        ("2026-10-25T02:30:00", "2026-10-25", "2026-10-25T00:00:00", "2026-10-26T00:00:00", 25),
    ],
)
def test_it_cuts_days_at_local_midnight_across_dst(instant, key, starts, ends, hours):
    rule = PeriodRule("daily", BERLIN)
    period = period_at(rule, micros(instant, BERLIN))
    assert period.key == key
    assert (period.starts_us, period.ends_us) == (micros(starts, BERLIN), micros(ends, BERLIN))
    assert period.ends_us - period.starts_us == hours * 3600 * SECOND
    assert period_parse(rule, key) == period


def test_it_counts_the_last_millisecond_before_midnight_in_the_old_day():
    rule = PeriodRule("daily", BERLIN)
    midnight = micros("2026-03-29T00:00:00", BERLIN)
    assert period_at(rule, midnight - MS).key == "2026-03-28"
    assert period_at(rule, midnight).key == "2026-03-29"
    # The same instants in UTC are in the same UTC day: the board's zone decides.
    utc = PeriodRule("daily", "UTC")
    assert period_at(utc, midnight - MS).key == period_at(utc, midnight).key


@pytest.mark.parametrize(
    ("instant", "key", "monday", "next_monday"),
    [
        # 2026 has 53 ISO weeks: W53 runs from Monday 2026-12-28 into 2027.
        ("2026-12-28T00:00:00", "2026-W53", "2026-12-28", "2027-01-04"),
        ("2027-01-03T23:59:59.999999", "2026-W53", "2026-12-28", "2027-01-04"),
        ("2027-01-04T00:00:00", "2027-W01", "2027-01-04", "2027-01-11"),
        # A Monday in the week that starts the ISO year before the calendar one.
        ("2025-12-29T08:00:00", "2026-W01", "2025-12-29", "2026-01-05"),
        ("2026-11-28T12:00:00", "2026-W48", "2026-11-23", "2026-11-30"),
    ],
)
def test_it_cuts_iso_weeks_from_monday_across_a_year(instant, key, monday, next_monday):
    rule = PeriodRule("weekly", BERLIN)
    period = period_at(rule, micros(instant, BERLIN))
    assert period.key == key
    assert period.starts_us == local_midnight(date.fromisoformat(monday))
    assert period.ends_us == local_midnight(date.fromisoformat(next_monday))
    assert period_parse(rule, key) == period


def test_it_cuts_months_in_the_boards_zone_and_links_neighbours():
    rule = PeriodRule("monthly", "America/New_York")
    period = period_at(rule, micros("2026-12-31T23:59:59", "America/New_York"))
    assert period.key == "2026-12"
    assert period.starts_us == micros("2026-12-01T00:00:00", "America/New_York")
    assert period.ends_us == micros("2027-01-01T00:00:00", "America/New_York")
    # 05:00 UTC on New Year's Day is midnight in New York: January there.
    assert period_at(rule, micros("2027-01-01T05:00:00")).key == "2027-01"
    assert period_at(rule, micros("2027-01-01T04:59:59")).key == "2026-12"
    assert period_after(rule, period).key == "2027-01"
    assert period_before(rule, period).key == "2026-11"
    assert period_before(rule, period_at(rule, micros("2026-01-15T00:00:00"))).key == "2025-12"


def test_it_has_one_period_all_for_a_board_that_never_resets():
    rule = PeriodRule("never", "UTC")
    assert period_at(rule, 0).key == "all"
    assert period_parse(rule, "all").starts_us is None
    assert period_before(rule, period_at(rule, 0)) is None
    assert [p.key for p in periods_kept(rule, keep=12, now_us=10**15, created_us=0)] == ["all"]


@pytest.mark.parametrize(
    "key",
    ["", "today", "2026-11-28T00", "2026-13", "2026-00", "2026-02-30", "2025-W53", "2026-W00", "2026-W54", "26-11"],
)
def test_it_refuses_a_malformed_key(key):
    with pytest.raises(PeriodMalformed):
        period_parse(PeriodRule("daily", "UTC"), key)


@pytest.mark.parametrize(("reset", "key"), [("daily", "2026-W48"), ("weekly", "2026-11"), ("monthly", "all")])
def test_it_knows_no_key_of_another_kind(reset, key):
    with pytest.raises(PeriodUnknown):
        period_parse(PeriodRule(reset, "UTC"), key)


def test_it_keeps_the_current_period_and_at_most_keep_past_ones_since_creation():
    rule = PeriodRule("daily", BERLIN)
    now = micros("2026-03-30T12:00:00", BERLIN)
    kept = periods_kept(rule, keep=3, now_us=now, created_us=0)
    assert [p.key for p in kept] == ["2026-03-30", "2026-03-29", "2026-03-28", "2026-03-27"]
    assert all(newer.starts_us == older.ends_us for newer, older in pairwise(kept))
    created = micros("2026-03-28T12:00:00", BERLIN)
    assert [p.key for p in periods_kept(rule, keep=3, now_us=now, created_us=created)] == [
        "2026-03-30",
        "2026-03-29",
        "2026-03-28",
    ]
    readable = {"keep": 3, "now_us": now, "created_us": 0}
    assert period_readable(rule, "2026-03-27", **readable).key == "2026-03-27"
    for key in ["2026-03-26", "2026-03-31", "2026-W13"]:  # too old, future, another kind
        with pytest.raises(PeriodUnknown):
            period_readable(rule, key, **readable)
    with pytest.raises(PeriodUnknown):  # before the board existed
        period_readable(rule, "2026-03-27", keep=3, now_us=now, created_us=created)


def test_it_closes_after_the_grace_once_nothing_is_in_flight_or_after_the_longest_wait(settings):
    settings.LEADERBOARD_PERIOD_CLOSE_GRACE_SECONDS = 60
    settings.LEADERBOARD_PERIOD_CLOSE_MAX_WAIT_SECONDS = 900
    end = 10**15
    assert not period_close_due(ends_us=end, now_us=end + 59 * SECOND, in_flight=0)
    assert period_close_due(ends_us=end, now_us=end + 60 * SECOND, in_flight=0)
    assert not period_close_due(ends_us=end, now_us=end + 60 * SECOND, in_flight=5)
    assert period_close_due(ends_us=end, now_us=end + 900 * SECOND, in_flight=5)


# --- manual boards: versions ------------------------------------------------------------------


def test_a_manual_board_counts_versions_between_its_resets():
    rule = PeriodRule("manual", "UTC", resets=(1_000, 2_000), origin_us=10)
    assert [period_at(rule, t).key for t in (10, 999, 1_000, 1_999, 2_000, 10**15)] == [
        "v1",
        "v1",
        "v2",
        "v2",
        "v3",
        "v3",
    ]
    assert period_at(rule, 500) == Period("v1", 10, 1_000)
    assert period_at(rule, 2_500) == Period("v3", 2_000, None)  # the current one has no end yet
    assert period_before(rule, period_at(rule, 1_500)).key == "v1"
    assert period_before(rule, period_at(rule, 500)) is None
    assert period_after(rule, period_at(rule, 2_500)) is None
    assert [p.key for p in periods_kept(rule, keep=1, now_us=3_000, created_us=10)] == ["v3", "v2"]
    assert [p.key for p in periods_kept(rule, keep=5, now_us=3_000, created_us=10)] == ["v3", "v2", "v1"]


def test_a_manual_board_parses_versions_it_has_and_refuses_others():
    rule = PeriodRule("manual", "UTC", resets=(1_000,), origin_us=10)
    assert period_parse(rule, "v2") == Period("v2", 1_000, None)
    for key in ("v0", "v01", "v", "V1", "v1.0"):
        with pytest.raises(PeriodMalformed):
            period_parse(rule, key)
    with pytest.raises(PeriodUnknown, match="not started"):
        period_parse(rule, "v3")
    with pytest.raises(PeriodUnknown):
        period_parse(PeriodRule("daily", "UTC"), "v1")  # another kind's key
    with pytest.raises(PeriodUnknown):
        period_parse(rule, "2026-11-28")
    assert period_readable(rule, "v1", keep=1, now_us=5_000, created_us=10).key == "v1"
    with pytest.raises(PeriodUnknown, match="older"):
        period_readable(
            PeriodRule("manual", "UTC", resets=(1_000, 2_000), origin_us=10), "v1", keep=1, now_us=5_000, created_us=10
        )
