"""Reads of a resetting board's periods: which ones it keeps, which are closed, and which
period a read names."""

from dataclasses import dataclass

from rankings import periods
from rankings.models import Leaderboard, TopN
from rankings.ordering import to_micros
from rankings.periods import Period, iso_instant, period_readable, periods_kept

# The strategy a past period's /top is read with: its stored top-N (published by its
# root, and once closed the final one rebuilt from the database), on both strategies.
STORED_TOP = "merge_tree"


@dataclass(frozen=True)
class PeriodView:
    key: str
    starts_at: str | None  # ISO-8601, UTC
    ends_at: str | None
    closed: bool


@dataclass(frozen=True)
class PeriodsView:
    leaderboard: str
    current: str
    periods: list[PeriodView]  # newest first


def _kept(leaderboard: Leaderboard, now_us: int) -> list[Period]:
    return periods_kept(
        leaderboard.period_rule(),
        keep=leaderboard.keep_periods,
        now_us=now_us,
        created_us=to_micros(leaderboard.created_at),
    )


def leaderboard_periods(*, leaderboard: Leaderboard, now_us: int | None = None) -> PeriodsView:
    """The current period and the kept past ones, newest first, each with its bounds and
    whether it is closed (one query for the flags)."""
    kept = _kept(leaderboard, periods.clock_us() if now_us is None else now_us)
    closed = set(
        TopN.objects.filter(leaderboard=leaderboard, period__in=[p.key for p in kept], closed=True).values_list(
            "period", flat=True
        )
    )
    return PeriodsView(
        leaderboard=leaderboard.slug,
        current=kept[0].key,
        periods=[PeriodView(p.key, iso_instant(p.starts_us), iso_instant(p.ends_us), p.key in closed) for p in kept],
    )


def leaderboard_period_named(*, leaderboard: Leaderboard, key: str | None) -> str:
    """The period a read names: the current one when ``key`` is None, else ``key`` if the
    board keeps it (PeriodMalformed, PeriodUnknown otherwise; a purged period is one the
    board no longer keeps)."""
    if key is None:
        return leaderboard.current_period()
    period = period_readable(
        leaderboard.period_rule(),
        key,
        keep=leaderboard.keep_periods,
        now_us=periods.clock_us(),
        created_us=to_micros(leaderboard.created_at),
    )
    return period.key


def top_strategy(*, leaderboard: Leaderboard, period: str, strategy: str) -> str:
    """The configured strategy for the current period; the stored top-N for past ones."""
    return strategy if period == leaderboard.current_period() else STORED_TOP
