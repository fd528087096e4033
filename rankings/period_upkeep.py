"""Beat's work on resetting boards (``tasks.maintenance.period_upkeep``): open the next
period, close the periods that are over, purge those past ``keep_periods``.

- Open: the next period gets its (empty) top-N row and Redis copy, and its rank index is
  marked complete while the database holds no row of it, so the first reads after a
  boundary are served from Redis instead of the database. Nothing is copied over.
- Close: once a grace (``LEADERBOARD_PERIOD_CLOSE_GRACE_SECONDS``) after its end has
  passed, and the ingest backlog counters say nothing is in flight, a past period's final
  top-N is rebuilt exactly from the database into the TopN table (``closed``) and Redis.
  Under a load that never lets the backlog empty, it closes anyway after
  ``LEADERBOARD_PERIOD_CLOSE_MAX_WAIT_SECONDS``. A straggler applied later still counts:
  its root publishes into the closed period's row, which therefore stays exact.
- Purge: a period older than the kept ones loses its score rows (in chunks), every Redis
  key of (board, period), then its top-N row, last, so a purge cut short by its time
  budget is found again and finished by the next run. Event ids carry no period and no
  accepted time, so they are left to their own retention purge (``purge_event_ids``).
"""

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from redis import Redis

from rankings import cache, periods, redis_keys
from rankings.models import Leaderboard, Reset, TopN
from rankings.ordering import to_micros
from rankings.periods import (
    Period,
    PeriodMalformed,
    PeriodUnknown,
    period_after,
    period_before,
    period_parse,
    periods_kept,
)
from rankings.services import topn_rebuild
from scores.admission import backlog_in_flight

logger = logging.getLogger(__name__)

PERIOD_UPKEEP_TASK = "tasks.maintenance.period_upkeep"


@dataclass
class UpkeepReport:
    """What one run did, by "board-slug/period"; ``unfinished``: purges left for the next run."""

    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


def period_close_due(*, ends_us: int, now_us: int, in_flight: int) -> bool:
    """Whether a period that ended at ``ends_us`` is closed now: after the grace, once
    nothing is in flight (events accepted before the end may still be on their way), or
    after the longest wait whatever the backlog says."""
    grace_us = settings.LEADERBOARD_PERIOD_CLOSE_GRACE_SECONDS * 1_000_000
    max_wait_us = max(grace_us, settings.LEADERBOARD_PERIOD_CLOSE_MAX_WAIT_SECONDS * 1_000_000)
    return now_us >= ends_us + max_wait_us or (now_us >= ends_us + grace_us and in_flight <= 0)


def _has_rows(leaderboard: Leaderboard, period: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM scores_score WHERE leaderboard_id = %s AND period = %s LIMIT 1", [leaderboard.id, period]
        )
        return cursor.fetchone() is not None


def period_open(*, leaderboard: Leaderboard, period: str, client: Redis) -> None:
    """Make a period's top-N and rank index complete (and empty) before its first read."""
    topn_rebuild(leaderboard=leaderboard, period=period)
    if cache.index_is_ready(client, leaderboard.id, period):
        return
    # Checked before marking: a row committed after the check reaches the index through
    # its hand-off, which follows its commit; a row committed before it keeps the index
    # unmarked, and the first read asks for a rebuild as it always does.
    if cache.index_build_state(client, leaderboard.id, period) is None and not _has_rows(leaderboard, period):
        cache.index_mark_ready(client, leaderboard.id, period)


def period_close(*, leaderboard: Leaderboard, period: str) -> TopN:
    """Store the period's final top-N, exact from the database, and mark it closed."""
    top = topn_rebuild(leaderboard=leaderboard, period=period)
    TopN.objects.filter(pk=top.pk).update(closed=True)
    top.closed = True
    return top


def _delete_rows_chunk(table: str, leaderboard_id: int, period: str, chunk: int) -> int:
    """Delete the period's rows of up to ``chunk`` users from ``table``; rows deleted."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Two statements, each single-table, as Citus runs them on every shard alike.
        cursor.execute(
            f"SELECT user_id FROM {table} WHERE leaderboard_id = %s AND period = %s LIMIT %s",
            [leaderboard_id, period, chunk],
        )
        users = [row[0] for row in cursor.fetchall()]
        if not users:
            return 0
        cursor.execute(
            f"DELETE FROM {table} WHERE leaderboard_id = %s AND period = %s AND user_id = ANY(%s)",
            [leaderboard_id, period, users],
        )
        return cursor.rowcount


def period_redis_keys_delete(client: Redis, leaderboard_id: int, period: str) -> int:
    """Every key of (board, period), and the board-period's entries in the sets the
    sweeper and the reconcile read."""
    deleted = cache.keys_delete_matching(client, redis_keys.period_keys_pattern(leaderboard_id, period))
    pipe = client.pipeline(transaction=False)
    pipe.srem(redis_keys.touched_key(), f"{leaderboard_id}|{period}")
    pipe.zrem(redis_keys.reconciled_key(), f"{leaderboard_id}|{period}")
    pipe.srem(redis_keys.boards_with_rounds_key(), f"{leaderboard_id}:{period}")
    pipe.execute()
    return deleted


def period_purge(*, leaderboard: Leaderboard, period: str, chunk: int, deadline: float) -> bool:
    """Remove a period's rows, Redis keys and top-N row; False when the time ran out first."""
    for table in ("scores_score", "scores_entryprofile"):
        while _delete_rows_chunk(table, leaderboard.id, period, chunk):
            if time.monotonic() > deadline:
                return False
    period_redis_keys_delete(cache.redis_client(), leaderboard.id, period)
    TopN.objects.filter(leaderboard=leaderboard, period=period).delete()
    return True


def _purge_candidates(leaderboard: Leaderboard, stored: set[str], oldest_kept: Period) -> list[str]:
    """Periods of the board older than the oldest kept one: those with a top-N row (every
    period that had events or was closed has one) and the one just before the kept ones."""
    rule = leaderboard.period_rule()
    candidates = set()
    for key in stored:
        try:
            period = period_parse(rule, key)
        except (PeriodMalformed, PeriodUnknown):
            continue  # not a period of this board's kind: nothing of it can be stored
        if period.ends_us is not None and oldest_kept.starts_us is not None and period.ends_us <= oldest_kept.starts_us:
            candidates.add(key)
    before = period_before(rule, oldest_kept)
    if before is not None and (before.key in candidates or _has_rows(leaderboard, before.key)):
        candidates.add(before.key)
    return sorted(candidates)


def _board_upkeep(
    leaderboard: Leaderboard, tops: dict[str, bool], now_us: int, in_flight: int, deadline: float, report: UpkeepReport
) -> None:
    rule = leaderboard.period_rule()
    name = leaderboard.slug
    kept = periods_kept(
        rule, keep=leaderboard.keep_periods, now_us=now_us, created_us=to_micros(leaderboard.created_at)
    )
    client = cache.redis_client()
    upcoming = period_after(rule, kept[0])
    if upcoming is not None and upcoming.key not in tops:
        period_open(leaderboard=leaderboard, period=upcoming.key, client=client)
        report.opened.append(f"{name}/{upcoming.key}")
    for period in kept[1:]:
        if tops.get(period.key) is True or period.ends_us is None:
            continue
        if period_close_due(ends_us=period.ends_us, now_us=now_us, in_flight=in_flight):
            period_close(leaderboard=leaderboard, period=period.key)
            report.closed.append(f"{name}/{period.key}")
    for key in _purge_candidates(leaderboard, set(tops), kept[-1]):
        done = time.monotonic() <= deadline and period_purge(
            leaderboard=leaderboard, period=key, chunk=settings.LEADERBOARD_DELETE_CHUNK_USERS, deadline=deadline
        )
        (report.purged if done else report.unfinished).append(f"{name}/{key}")


def periods_upkeep(*, now_us: int | None = None, budget_seconds: float) -> UpkeepReport:
    """One run over every resetting board: open, close and purge what is due at ``now_us``
    (the clock by default; tests pass their own)."""
    now_us = periods.clock_us() if now_us is None else now_us
    deadline = time.monotonic() + budget_seconds
    boards = list(Leaderboard.objects.filter(deleting=False).exclude(reset=Reset.NEVER).order_by("id"))
    tops: dict[int, dict[str, bool]] = defaultdict(dict)
    for leaderboard_id, period, closed in TopN.objects.filter(leaderboard__in=boards).values_list(
        "leaderboard_id", "period", "closed"
    ):
        tops[leaderboard_id][period] = closed
    in_flight = backlog_in_flight()
    report = UpkeepReport()
    for board in boards:
        _board_upkeep(board, tops[board.id], now_us, in_flight, deadline, report)
    return report
