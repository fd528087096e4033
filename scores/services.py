"""Writes of score events: publishing them to the ingest queues, and applying batches.

``score_events_submit`` runs in the web process: it stamps the events with the time the
service accepted them and returns only after the broker confirmed them (concurrent
requests of one process share a publish, see ``scores.publisher``).
``score_events_apply`` runs in an ingest worker: one transaction records the event ids
(duplicates dropped), aggregates per (board, period, user) and upserts the scores with
row locks taken in key order.

Every rule below depends only on the events' accepted times and ids, never on the order
the workers apply them in: ``sum`` adds, ``best`` keeps the better value (the earliest
event to reach it stamps ``reached_at``), ``last`` is a last-writer-wins register on
(accepted time, event_id). Redelivery, retries, parallel consumers and batching of
messages therefore cannot change a result.
"""

import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from leaderboard_project import metrics
from rankings.models import Aggregation, Leaderboard, Order
from rankings.ordering import INT64_MAX, from_micros, to_micros
from rankings.selectors import leaderboards_by_id
from scores.admission import admission_check
from scores.publisher import BrokerUnavailable, ingest_publisher
from scores.tombstones import is_erased, tombstones_read
from tasks.messages import ChangedRow, Row, ScoreEvent

logger = logging.getLogger(__name__)

# Ids the service makes for events sent without one; "~" is outside the client alphabet.
SERVER_EVENT_ID_MARK = "~"

__all__ = ["BrokerUnavailable", "Overloaded", "score_events_apply", "score_events_submit"]


def now_micros() -> int:
    return time.time_ns() // 1000


class Overloaded(Exception):
    """Admission control refused the request (``reason``: "overloaded" or "over share");
    nothing was published."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def score_events_submit(*, leaderboard: Leaderboard, events: Sequence[dict], api_key_id: int | None = None) -> int:
    """Stamp validated events with one accepted time and publish them as one message;
    refuse them (Overloaded) while admission control sheds load."""
    refusal = admission_check(key_id=api_key_id, events=len(events))
    if refusal is not None:
        raise Overloaded(refusal)
    accepted_us = now_micros()
    batch = []
    for position, event in enumerate(events):
        # Server ids sort by position within the request, so on a "last" board the later
        # of two events of one request wins, as the client wrote them.
        event_id = event.get("event_id") or f"{SERVER_EVENT_ID_MARK}{position:04d}{uuid.uuid4().hex}"
        batch.append(ScoreEvent(leaderboard.id, event["user_id"], event["points"], event_id, accepted_us))
    if batch:
        ingest_publisher().publish(batch)
    return len(batch)


@dataclass(frozen=True)
class _Key:
    """One score row: its key in the table, in the order row locks are taken."""

    user_id: str
    leaderboard_id: int
    period: str


@dataclass
class _Change:
    """A batch's aggregated effect on one score row, ready to meet the stored row."""

    value: int
    reached_us: int
    reached_by: str = ""


def _aggregate(board: Leaderboard, events: list[ScoreEvent]) -> _Change | None:
    """Fold one row's fresh events; None when none of them can change the row."""
    if board.aggregation == Aggregation.SUM:
        moving = [e for e in events if e.points != 0]
        if not moving:
            return None
        # Exact in Python; the upsert adds it exactly to the stored exact total.
        return _Change(sum(e.points for e in moving), max(e.accepted_us for e in moving))
    if board.aggregation == Aggregation.BEST:
        pick = max if board.order == Order.DESC else min
        best = pick(e.points for e in events)
        return _Change(best, min(e.accepted_us for e in events if e.points == best))
    latest = max(events, key=lambda e: (e.accepted_us, e.event_id))
    return _Change(latest.points, latest.accepted_us, latest.event_id)


def _clamp(value: int) -> int:
    return max(-INT64_MAX, min(INT64_MAX, value))


@dataclass(frozen=True)
class _Group:
    """Boards that share an upsert statement: same aggregation and order."""

    aggregation: str
    desc: bool


def _better(group: _Group, new: str, old: str) -> str:
    return f"{new} > {old}" if group.desc else f"{new} < {old}"


def _upsert_sql(group: _Group) -> str:
    """One statement per group. "s" is the stored row, EXCLUDED this batch's change.

    Rows are inserted in key order, so concurrent batches lock rows in one order and
    cannot deadlock; groups run in a fixed order for the same reason. A row the change
    cannot move is left alone (the WHERE) and read back by ``_CURRENT_ROWS_SQL``.
    """
    sign = "-" if group.desc else ""
    if group.aggregation == Aggregation.SUM:
        # The exact total is kept (exact_total) while it lies beyond the bigint range, so
        # the stored score is always the saturated exact sum of every event, however the
        # events were batched: clamping each batch's sum would depend on the batching.
        exact = "(COALESCE(s.exact_total, s.score::numeric) + COALESCE(EXCLUDED.exact_total, EXCLUDED.score::numeric))"
        new = f"LEAST(GREATEST({exact}, -{INT64_MAX}), {INT64_MAX})::bigint"
        update = f"""score = {new}, sort_key = {sign}{new},
            exact_total = CASE WHEN abs({exact}) > {INT64_MAX} THEN {exact} END,
            reached_at = GREATEST(s.reached_at, EXCLUDED.reached_at)"""
        where = "TRUE"
    elif group.aggregation == Aggregation.BEST:
        better = _better(group, "EXCLUDED.score", "s.score")
        update = """score = EXCLUDED.score, sort_key = EXCLUDED.sort_key,
            reached_at = CASE WHEN EXCLUDED.score = s.score THEN LEAST(s.reached_at, EXCLUDED.reached_at)
                              ELSE EXCLUDED.reached_at END"""
        where = f"{better} OR (EXCLUDED.score = s.score AND EXCLUDED.reached_at < s.reached_at)"
    else:
        update = """score = EXCLUDED.score, sort_key = EXCLUDED.sort_key,
            reached_at = EXCLUDED.reached_at, reached_by = EXCLUDED.reached_by"""
        where = "(EXCLUDED.reached_at, EXCLUDED.reached_by) > (s.reached_at, s.reached_by)"
    return f"""
        INSERT INTO scores_score AS s
            (user_id, leaderboard_id, period, score, sort_key, reached_at, reached_by, version, exact_total)
        SELECT t.u, t.b, t.p, t.v, {sign}t.v, t.r, t.e, 1,
               CASE WHEN abs(t.x::numeric) > {INT64_MAX} THEN t.x::numeric END
        FROM (SELECT t.u, t.b, t.p, t.v, {_FROM_MICROS.format("t.r")} AS r, t.e, t.x
              FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[], %(values)s::bigint[],
                          %(reached)s::bigint[], %(by)s::text[], %(exact)s::text[]) AS t(u, b, p, v, r, e, x)) AS t
        ORDER BY t.u, t.b, t.p
        ON CONFLICT (user_id, leaderboard_id, period) DO UPDATE SET {update}, version = s.version + 1
        WHERE {where}
        RETURNING leaderboard_id, period, user_id, score, reached_at, version
    """


# Microseconds since the epoch as a timestamptz, exactly (no float on the way).
_FROM_MICROS = "('epoch'::timestamptz + {} * interval '1 microsecond')"

_RECORD_EVENTS_SQL = """
    INSERT INTO scores_processedevent (user_id, leaderboard_id, event_id, applied_at)
    SELECT t.u, t.b, t.e, %(now)s
    FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(events)s::text[]) AS t(u, b, e)
    ORDER BY t.u, t.b, t.e
    ON CONFLICT DO NOTHING
    RETURNING user_id, leaderboard_id, event_id
"""

# Rows a zero-points event creates (a user on the board at 0), in key order; existing
# rows are left alone and read back like every other row the batch did not move.
_TOUCH_SQL = """
    INSERT INTO scores_score AS s
        (user_id, leaderboard_id, period, score, sort_key, reached_at, reached_by, version)
    SELECT t.u, t.b, t.p, 0, 0, t.r, '', 1
    FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[], %(reached)s::timestamptz[])
         AS t(u, b, p, r)
    ORDER BY t.u, t.b, t.p
    ON CONFLICT (user_id, leaderboard_id, period) DO NOTHING
    RETURNING leaderboard_id, period, user_id, score, reached_at, version
"""

_CURRENT_ROWS_SQL = """
    SELECT s.leaderboard_id, s.period, s.user_id, s.score, s.reached_at, s.version
    FROM scores_score s
    JOIN unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[]) AS t(u, b, p)
      ON s.user_id = t.u AND s.leaderboard_id = t.b AND s.period = t.p
"""


def _as_changed(rows: Sequence[tuple]) -> list[ChangedRow]:
    return [ChangedRow(b, p, Row(u, score, to_micros(reached), version)) for b, p, u, score, reached, version in rows]


def _text_array(values: Iterable[str]) -> str | list[str]:
    """A PostgreSQL array literal of these strings, for a ``::text[]`` parameter.

    psycopg quotes a Python list element by element in Python, which cost more than the
    statement itself at 1,000 rows; one string is quoted at once. Ids and periods never
    hold a quote or a backslash (their alphabet is validated at the door); should one ever
    arrive, the list goes to psycopg as it is."""
    items = list(values)
    raw = "\x00".join(items)
    if not items or '"' in raw or "\\" in raw or "\x00" in "".join(items):
        return items
    return '{"' + raw.replace("\x00", '","') + '"}'


def _int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _key_arrays(keys: Sequence[_Key]) -> dict[str, str | list[str]]:
    return {
        "users": _text_array(k.user_id for k in keys),
        "boards": _int_array(k.leaderboard_id for k in keys),
        "periods": _text_array(k.period for k in keys),
    }


def score_events_apply(*, events: Sequence[ScoreEvent], now: datetime | None = None) -> list[ChangedRow]:
    """Apply events exactly once and return the current rows of every user they touched.

    Users whose events were all duplicates (or could not move their row) are returned
    too: after a crash between the commit and the hand-off to ranking, the redelivered
    batch re-sends their rows, so the ranking side never misses a change.
    """
    boards = leaderboards_by_id({event.leaderboard_id for event in events})
    unique: dict[tuple[str, int, str], ScoreEvent] = {}
    for event in events:
        if event.leaderboard_id not in boards:
            logger.warning("dropping event for deleted leaderboard %s", event.leaderboard_id)
            continue
        unique.setdefault((event.user_id, event.leaderboard_id, event.event_id), event)
    if not unique:
        return []

    with transaction.atomic(), connection.cursor() as cursor:
        ids = sorted(unique)
        # Erased users (scores.tombstones): read in this transaction, before any write.
        tombstones = tombstones_read(cursor, _text_array(sorted({k[0] for k in ids})))
        cursor.execute(
            _RECORD_EVENTS_SQL,
            {
                "now": now or from_micros(now_micros()),
                "users": _text_array(k[0] for k in ids),
                "boards": _int_array(k[1] for k in ids),
                "events": _text_array(k[2] for k in ids),
            },
        )
        fresh_ids = {tuple(row) for row in cursor.fetchall()}

        fresh: dict[_Key, list[ScoreEvent]] = defaultdict(list)
        touched: set[_Key] = set()
        for event_key, event in unique.items():
            if is_erased(tombstones.get(event.user_id), event.accepted_us):
                # Dropped, and its row not handed off (the erasure removes it); its id is
                # recorded above, so a resend of it is not counted later either.
                continue
            board = boards[event.leaderboard_id]
            key = _Key(event.user_id, board.id, board.period_of(event.accepted_us))
            touched.add(key)
            if event_key in fresh_ids:
                fresh[key].append(event)

        changes: dict[_Group, dict[_Key, _Change]] = defaultdict(dict)
        idle: dict[_Key, int] = {}
        for key, key_events in fresh.items():
            board = boards[key.leaderboard_id]
            change = _aggregate(board, key_events)
            if change is None:
                idle[key] = max(e.accepted_us for e in key_events)
            else:
                changes[_Group(board.aggregation, board.order == Order.DESC)][key] = change

        changed: list[ChangedRow] = []
        for group in sorted(changes, key=lambda g: (g.aggregation, g.desc)):
            group_changes = changes[group]
            group_keys = sorted(group_changes, key=lambda k: (k.user_id, k.leaderboard_id, k.period))
            cursor.execute(
                _upsert_sql(group),
                {
                    **_key_arrays(group_keys),
                    "values": _int_array(_clamp(group_changes[k].value) for k in group_keys),
                    # The batch's exact value ("sum" keeps it when it is beyond the bigint range).
                    "exact": _text_array(str(group_changes[k].value) for k in group_keys),
                    "reached": _int_array(group_changes[k].reached_us for k in group_keys),
                    "by": _text_array(group_changes[k].reached_by for k in group_keys),
                },
            )
            changed += _as_changed(cursor.fetchall())
        if idle:
            idle_keys = sorted(idle, key=lambda k: (k.user_id, k.leaderboard_id, k.period))
            cursor.execute(_TOUCH_SQL, {**_key_arrays(idle_keys), "reached": [from_micros(idle[k]) for k in idle_keys]})
            changed += _as_changed(cursor.fetchall())

        moved = {_Key(c.row.user_id, c.leaderboard_id, c.period) for c in changed}
        unmoved = sorted(touched - moved, key=lambda k: (k.user_id, k.leaderboard_id, k.period))
        if unmoved:
            cursor.execute(_CURRENT_ROWS_SQL, _key_arrays(unmoved))
            changed += _as_changed(cursor.fetchall())
    _record_applied(boards, unique, fresh_ids)
    return changed


def _record_applied(
    boards: dict[int, Leaderboard], unique: dict[tuple[str, int, str], ScoreEvent], fresh_ids: set[tuple]
) -> None:
    """Metrics of a committed batch: events applied and duplicates per board, and the lag
    from acceptance to commit (once per request: its events share one accepted time)."""
    applied: Counter[int] = Counter()
    duplicates: Counter[int] = Counter()
    for event_key, event in unique.items():
        (applied if event_key in fresh_ids else duplicates)[event.leaderboard_id] += 1
    for leaderboard_id in applied.keys() | duplicates.keys():
        metrics.events_applied(boards[leaderboard_id].slug, applied[leaderboard_id], duplicates[leaderboard_id])
    now = now_micros()
    for accepted_us in {event.accepted_us for event in unique.values()}:
        metrics.ingest_lag_observe((now - accepted_us) / 1e6)
