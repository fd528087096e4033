"""Period math of resetting boards, as pure functions: the key of an instant, the bounds
of a key, parsing a key, the periods a board keeps.

Keys are ``all`` (never resets), ``2026-11-28`` (daily), ``2026-W48`` (ISO week, from
Monday 00:00) and ``2026-11`` (monthly), each in the board's time zone, and ``v1``, ``v2``,
… on a board an operator resets by hand (``manual``): version n runs from the (n-1)th
reset's instant to the nth's, the current one has no end yet. Bounds are local
midnights turned into instants by zoneinfo, so a day across a DST change lasts 23 or 25
hours and consecutive periods always meet (one period's end is the next one's start).
Instants are integer microseconds since the epoch, like the accepted-time stamps.
"""

import re
import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

NEVER = "never"
DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
MANUAL = "manual"
ALL_TIME = "all"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_KEY_SHAPES = {
    NEVER: re.compile(r"all\Z"),
    DAILY: re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z"),
    WEEKLY: re.compile(r"(\d{4})-W(\d{2})\Z"),
    MONTHLY: re.compile(r"(\d{4})-(\d{2})\Z"),
    MANUAL: re.compile(r"v([1-9]\d{0,8})\Z"),
}


class PeriodMalformed(ValueError):
    """The text is no period key of any kind (a 400)."""


class PeriodUnknown(LookupError):
    """A well-formed key this board has no readable period for (a 404): another kind,
    in the future, before the board existed, or older than the periods it keeps."""


@dataclass(frozen=True)
class Period:
    key: str
    # Bounds in µs since the epoch, [starts_us, ends_us); None for the one "all" period
    # (both) and for the current version of a manual board (its end).
    starts_us: int | None
    ends_us: int | None


ALL_TIME_PERIOD = Period(ALL_TIME, None, None)


@dataclass(frozen=True)
class PeriodRule:
    """How a board resets: the kind of its periods and the time zone they are cut in."""

    reset: str
    timezone: str
    # A manual board's reset instants (µs, ascending), and when its v1 began.
    resets: tuple[int, ...] = ()
    origin_us: int = 0


def _version(rule: PeriodRule, number: int) -> Period:
    starts = rule.resets[number - 2] if number >= 2 else rule.origin_us
    ends = rule.resets[number - 1] if number - 1 < len(rule.resets) else None
    return Period(f"v{number}", starts, ends)


def _current_version(rule: PeriodRule) -> int:
    return len(rule.resets) + 1


def clock_us() -> int:
    """Now, in µs since the epoch: the one clock period reads ask (tests set their own)."""
    return time.time_ns() // 1000


@cache
def timezone_names() -> frozenset[str]:
    """The IANA names a board may reset in (read once: it lists the tz database)."""
    return frozenset(available_timezones())


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_midnight_us(day: date, zone: ZoneInfo) -> int:
    """The instant of local midnight starting ``day``. A midnight skipped by a DST jump
    resolves to the instant of the jump (zoneinfo uses the offset in force before it)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=zone)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _local_date(instant_us: int, zone: ZoneInfo) -> date:
    return (_EPOCH + timedelta(microseconds=instant_us)).astimezone(zone).date()


def _first_day(reset: str, day: date) -> date:
    """The first local day of the period holding ``day``."""
    if reset == WEEKLY:
        return day - timedelta(days=day.weekday())
    if reset == MONTHLY:
        return day.replace(day=1)
    return day


def _next_first_day(reset: str, first: date) -> date:
    if reset == WEEKLY:
        return first + timedelta(days=7)
    if reset == MONTHLY:
        return date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first + timedelta(days=1)


def _key_of(reset: str, first: date) -> str:
    if reset == WEEKLY:
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    if reset == MONTHLY:
        return f"{first.year}-{first.month:02d}"
    return first.isoformat()


def _period_from_first_day(rule: PeriodRule, first: date) -> Period:
    zone = _zone(rule.timezone)
    ends = _next_first_day(rule.reset, first)
    return Period(_key_of(rule.reset, first), _local_midnight_us(first, zone), _local_midnight_us(ends, zone))


def period_at(rule: PeriodRule, instant_us: int) -> Period:
    """The period containing an instant."""
    if rule.reset == NEVER:
        return ALL_TIME_PERIOD
    if rule.reset == MANUAL:
        return _version(rule, bisect_right(rule.resets, instant_us) + 1)
    return _period_from_first_day(rule, _first_day(rule.reset, _local_date(instant_us, _zone(rule.timezone))))


def period_before(rule: PeriodRule, period: Period) -> Period | None:
    """The period just before ``period``; None for "all", which has none."""
    if period.starts_us is None:
        return None
    if rule.reset == MANUAL:
        number = int(period.key[1:])
        return _version(rule, number - 1) if number > 1 else None
    return period_at(rule, period.starts_us - 1)


def period_after(rule: PeriodRule, period: Period) -> Period | None:
    """The period just after ``period``; None for "all"."""
    if period.ends_us is None:
        return None
    return period_at(rule, period.ends_us)


def _first_day_of_key(key: str) -> tuple[str, date]:
    """The kind of a key and the first local day it names; PeriodMalformed otherwise."""
    for kind, shape in _KEY_SHAPES.items():
        match = shape.match(key)
        if match is None:
            continue
        if kind in (NEVER, MANUAL):
            return kind, date.min
        numbers = [int(part) for part in match.groups()]
        try:
            if kind == WEEKLY:
                first = date.fromisocalendar(numbers[0], numbers[1], 1)
            elif kind == MONTHLY:
                first = date(numbers[0], numbers[1], 1)
            else:
                first = date(*numbers)
            _next_first_day(kind, first)  # the end must exist too (not past year 9999)
        except (ValueError, OverflowError) as exc:
            raise PeriodMalformed(f"'{key}' names no real {kind} period: {exc}.") from exc
        return kind, first
    raise PeriodMalformed(
        f"'{key}' is not a period key: use 'all', a day '2026-11-28', an ISO week '2026-W48', a month '2026-11' "
        "or a version 'v1'."
    )


def period_parse(rule: PeriodRule, key: str) -> Period:
    """The period a key names on a board of this rule: PeriodMalformed when the text is
    no key, PeriodUnknown when it is a key of another kind."""
    kind, first = _first_day_of_key(key)
    if kind != rule.reset:
        raise PeriodUnknown(f"This board resets {rule.reset}: it has no period '{key}'.")
    if kind == NEVER:
        return ALL_TIME_PERIOD
    if kind == MANUAL:
        number = int(key[1:])
        if number > _current_version(rule):
            raise PeriodUnknown(f"Version '{key}' has not started.")
        return _version(rule, number)
    return _period_from_first_day(rule, first)


def periods_kept(rule: PeriodRule, *, keep: int, now_us: int, created_us: int) -> list[Period]:
    """The readable periods, newest first: the current one and at most ``keep`` past ones,
    leaving out those that ended before the board was created (no event can be in them)."""
    current = period_at(rule, now_us)
    kept = [current]
    while len(kept) <= keep:
        earlier = period_before(rule, kept[-1])
        if earlier is None or earlier.ends_us is None or earlier.ends_us <= created_us:
            break
        kept.append(earlier)
    return kept


def _ordinal(reset: str, first: date) -> int:
    """A period's position in a count of periods (consecutive periods differ by one)."""
    if reset == MONTHLY:
        return first.year * 12 + first.month - 1
    days = first.toordinal()
    return days // 7 if reset == WEEKLY else days  # ISO weeks start on Mondays: ordinal 1 is a Monday


def period_readable(rule: PeriodRule, key: str, *, keep: int, now_us: int, created_us: int) -> Period:
    """The period ``key`` names if the board keeps it now (without listing them all);
    PeriodMalformed or PeriodUnknown otherwise."""
    period = period_parse(rule, key)
    if rule.reset == NEVER:
        return period
    if rule.reset == MANUAL:
        current = period_at(rule, now_us)
        back = int(current.key[1:]) - int(key[1:])
        if back < 0:
            raise PeriodUnknown(f"Version '{key}' has not started.")
        if back > keep:
            raise PeriodUnknown(f"Version '{key}' is older than the {keep} past versions this board keeps.")
        return period
    _, first = _first_day_of_key(key)
    current_first = _first_day(rule.reset, _local_date(now_us, _zone(rule.timezone)))
    back = _ordinal(rule.reset, current_first) - _ordinal(rule.reset, first)
    if back < 0:
        raise PeriodUnknown(f"Period '{key}' has not started.")
    if back > keep:
        raise PeriodUnknown(f"Period '{key}' is older than the {keep} past periods this board keeps.")
    if back > 0 and period.ends_us is not None and period.ends_us <= created_us:
        raise PeriodUnknown(f"Period '{key}' ended before the board was created.")
    return period


def iso_instant(instant_us: int | None) -> str | None:
    """An instant as ISO-8601 in UTC ("Z"), as the API renders datetimes."""
    if instant_us is None:
        return None
    moment = _EPOCH + timedelta(microseconds=instant_us)
    return moment.isoformat().replace("+00:00", "Z")
