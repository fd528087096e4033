"""Writes of score events: publishing them to the ingest queues, and applying a batch.

``score_events_submit`` runs in the web process and returns only after the broker
confirmed every message. ``score_events_apply`` runs in an ingest worker: one
transaction records the event ids (duplicates dropped), aggregates per user and upserts
the scores with row locks taken in key order.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from leaderboard_project.celery import app as celery_app
from rankings.models import Aggregation, Leaderboard, Order
from rankings.ordering import INT64_MAX, to_micros
from rankings.selectors import leaderboards_by_id
from scores.partitioning import partition_of
from tasks.queues import APPLY_EVENTS_TASK, ingest_queue_name

logger = logging.getLogger(__name__)

# Ids the service makes for events sent without one; "~" is outside the client alphabet.
SERVER_EVENT_ID_MARK = "~"

# A queued event: [leaderboard_id, user_id, points, event_id].
QueuedEvent = list
# A changed score: [leaderboard_id, period, user_id, score, reached_us, version].
ChangedRow = list


class BrokerUnavailable(Exception):
    """The broker did not confirm the events; nothing may be promised to the client."""


def score_events_submit(*, leaderboard: Leaderboard, events: Iterable[dict]) -> int:
    """Publish validated events, one persistent message per ingest partition."""
    partitions = settings.LEADERBOARD_INGEST_PARTITIONS
    by_partition: dict[int, list[QueuedEvent]] = defaultdict(list)
    count = 0
    for event in events:
        event_id = event.get("event_id") or SERVER_EVENT_ID_MARK + uuid.uuid4().hex
        user_id = event["user_id"]
        by_partition[partition_of(user_id, partitions)].append([leaderboard.id, user_id, event["points"], event_id])
        count += 1
    try:
        for partition, batch in sorted(by_partition.items()):
            celery_app.send_task(
                APPLY_EVENTS_TASK,
                args=[batch],
                queue=ingest_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, partition),
                retry=True,
                # Without it Celery subscribes to the result in Redis on every publish.
                ignore_result=True,
            )
    except (BrokerOperationalError, OSError) as exc:
        # Partitions published before the failure stay queued; a client that resends
        # with event ids has them applied once (see the API docs on 503).
        raise BrokerUnavailable(str(exc)) from exc
    return count


@dataclass(frozen=True)
class _Group:
    """Boards that share an upsert statement: same aggregation and order."""

    aggregation: str
    desc: bool


def _new_value_sql(group: _Group) -> str:
    # "s" is the stored row, "EXCLUDED" carries this batch's aggregated value.
    if group.aggregation == Aggregation.SUM:
        return f"LEAST(GREATEST(s.score::numeric + EXCLUDED.score::numeric, -{INT64_MAX}), {INT64_MAX})::bigint"
    if group.aggregation == Aggregation.BEST:
        return "GREATEST(s.score, EXCLUDED.score)" if group.desc else "LEAST(s.score, EXCLUDED.score)"
    return "EXCLUDED.score"


def _upsert_sql(group: _Group) -> str:
    new = _new_value_sql(group)
    sign = "-" if group.desc else ""
    # Rows are inserted in key order, so concurrent batches lock rows in one order and
    # cannot deadlock; statements run in a fixed group order for the same reason.
    return f"""
        INSERT INTO scores_score AS s (user_id, leaderboard_id, period, score, sort_key, reached_at, version)
        SELECT t.u, t.b, t.p, t.v, {sign}t.v, %(now)s, 1
        FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[], %(values)s::bigint[])
             AS t(u, b, p, v)
        ORDER BY t.u, t.b, t.p
        ON CONFLICT (user_id, leaderboard_id, period) DO UPDATE SET
            score = {new},
            sort_key = {sign}{new},
            reached_at = CASE WHEN {new} <> s.score THEN EXCLUDED.reached_at ELSE s.reached_at END,
            version = s.version + 1
        RETURNING leaderboard_id, period, user_id, score, reached_at, version
    """


_RECORD_EVENTS_SQL = """
    INSERT INTO scores_processedevent (user_id, leaderboard_id, event_id, applied_at)
    SELECT t.u, t.b, t.e, %(now)s
    FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(events)s::text[]) AS t(u, b, e)
    ORDER BY t.u, t.b, t.e
    ON CONFLICT DO NOTHING
    RETURNING user_id, leaderboard_id, event_id
"""

_CURRENT_ROWS_SQL = """
    SELECT s.leaderboard_id, s.period, s.user_id, s.score, s.reached_at, s.version
    FROM scores_score s
    JOIN unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[]) AS t(u, b, p)
      ON s.user_id = t.u AND s.leaderboard_id = t.b AND s.period = t.p
"""


def _clamp(value: int) -> int:
    return max(-INT64_MAX, min(INT64_MAX, value))


def _aggregate(board: Leaderboard, held: int | None, points: int) -> int:
    if held is None:
        return points
    if board.aggregation == Aggregation.SUM:
        return held + points
    if board.aggregation == Aggregation.BEST:
        return max(held, points) if board.order == Order.DESC else min(held, points)
    return points


def _as_changed(rows: Sequence[tuple]) -> list[ChangedRow]:
    return [[b, p, u, score, to_micros(reached), version] for b, p, u, score, reached, version in rows]


def score_events_apply(*, events: Sequence[QueuedEvent]) -> list[ChangedRow]:
    """Apply one batch exactly once and return the current rows of every user it touched.

    Users whose events were all duplicates are returned too: after a crash between the
    commit and the hand-off to ranking, the redelivered batch re-sends their rows, so
    the ranking side never misses a change.
    """
    boards = leaderboards_by_id({event[0] for event in events})
    unique: dict[tuple[str, int, str], QueuedEvent] = {}
    for event in events:
        if event[0] not in boards:
            logger.warning("dropping event for deleted leaderboard %s", event[0])
            continue
        unique.setdefault((event[1], event[0], event[3]), event)
    if not unique:
        return []

    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        keys = list(unique)
        cursor.execute(
            _RECORD_EVENTS_SQL,
            {
                "now": now,
                "users": [k[0] for k in keys],
                "boards": [k[1] for k in keys],
                "events": [k[2] for k in keys],
            },
        )
        fresh = {tuple(row) for row in cursor.fetchall()}

        # Aggregate fresh events per (board, period, user), in arrival order ("last" wins).
        values: dict[tuple[int, str, str], int] = {}
        for key, event in unique.items():
            if key not in fresh:
                continue
            board = boards[event[0]]
            score_key = (board.id, board.current_period(), event[1])
            values[score_key] = _aggregate(board, values.get(score_key), event[2])

        changed: list[ChangedRow] = []
        by_group: dict[_Group, list[tuple[int, str, str]]] = defaultdict(list)
        for score_key in values:
            board = boards[score_key[0]]
            by_group[_Group(board.aggregation, board.order == Order.DESC)].append(score_key)
        for group in sorted(by_group, key=lambda g: (g.aggregation, g.desc)):
            group_keys = by_group[group]
            cursor.execute(
                _upsert_sql(group),
                {
                    "now": now,
                    "users": [k[2] for k in group_keys],
                    "boards": [k[0] for k in group_keys],
                    "periods": [k[1] for k in group_keys],
                    "values": [_clamp(values[k]) for k in group_keys],
                },
            )
            changed += _as_changed(cursor.fetchall())

        untouched = {
            (boards[event[0]].id, boards[event[0]].current_period(), event[1]) for event in unique.values()
        } - values.keys()
        if untouched:
            cursor.execute(
                _CURRENT_ROWS_SQL,
                {
                    "users": [k[2] for k in untouched],
                    "boards": [k[0] for k in untouched],
                    "periods": [k[1] for k in untouched],
                },
            )
            changed += _as_changed(cursor.fetchall())
    return changed
