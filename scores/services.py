"""Writes of score events: publishing them to the ingest queues, and applying batches.

``score_events_submit`` runs in the web process: it stamps the events with the time the
service accepted them and returns only after the broker confirmed them (concurrent
requests of one process share a publish, see ``scores.publisher``).
``score_events_apply`` runs in an ingest worker: one transaction records the event ids
(duplicates dropped), aggregates per (board, period, user) and upserts the scores with
row locks taken in one order (on Citus shard by shard: see its "Lock order").

Every rule below depends only on the events' accepted times and ids, never on the order
the workers apply them in: ``sum`` adds, ``best`` keeps the better value (the earliest
event to reach it stamps ``reached_at``), ``last`` is a last-writer-wins register on
(accepted time, event_id). Redelivery, retries, parallel consumers and batching of
messages therefore cannot change a result.
"""

import itertools
import logging
import os
import re
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

import msgspec
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from msgspec import UNSET
from psycopg import errors as pg_errors
from psycopg import sql

from leaderboard_project import metrics
from rankings.models import Aggregation, Leaderboard, Order
from rankings.ordering import INT64_MAX, from_micros, to_micros
from rankings.selectors import cached_boards_forget, leaderboards_by_id
from scores.admission import admission_check
from scores.citus import scores_distributed, user_shards
from scores.profiles import (
    ProfileChange,
    RowKey,
    StoredProfile,
    metadata_encode,
    profile_change,
    profiles_current,
    profiles_from_rows,
    profiles_upsert_arrays,
    profiles_upsert_values_sql,
)
from scores.publisher import BrokerUnavailable, ingest_publisher
from scores.submission import SubmittedEvent, submitted_event
from scores.tombstones import Tombstones, is_erased, tombstones_read
from tasks.messages import ChangedRow, Row, ScoreEvent

logger = logging.getLogger(__name__)

# Ids the service makes for events sent without one; "~" is outside the client alphabet.
SERVER_EVENT_ID_MARK = "~"

__all__ = ["BrokerUnavailable", "Overloaded", "score_events_apply", "score_events_stamp", "score_events_submit"]


def now_micros() -> int:
    return time.time_ns() // 1000


class Overloaded(Exception):
    """Admission control refused the request (``reason``: "overloaded" or "over share");
    nothing was published."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def status(self) -> int:
        return 429 if self.reason == "over share" else 503

    @property
    def detail(self) -> str:
        # Shed at the door: nothing was published, so a resend later is always safe.
        if self.reason == "over share":
            return "This key's tenant sends more than its share while the service is busy; retry later."
        return "Overloaded: too many events wait to be applied; retry later."


class _ServerEventIds:
    """Ids for events sent without one: unique across processes and restarts (a random
    token per process, then a counter), with no system call per event as uuid4 costs."""

    def __init__(self) -> None:
        self._pid = -1
        self._token = ""
        self._counter = itertools.count()

    def next(self, position: int) -> str:
        if self._pid != os.getpid():  # a forked child must not repeat its parent's ids
            self._pid, self._token, self._counter = os.getpid(), secrets.token_hex(12), itertools.count()
        # Sorted by position within the request first, so on a "last" board the later of
        # two events of one request wins, as the client wrote them.
        return f"{SERVER_EVENT_ID_MARK}{position:04d}{self._token}{next(self._counter):x}"


_server_event_ids = _ServerEventIds()


def score_events_stamp(
    *, leaderboard: Leaderboard, events: Sequence[SubmittedEvent | Mapping[str, Any]], tenant: str | None = None
) -> list[ScoreEvent]:
    """Admit validated events (or refuse them, Overloaded, while admission control sheds
    load) and stamp them with one accepted time: the message's events, ready to publish.
    The events are the API's typed records, or plain mappings of the same fields."""
    refusal = admission_check(tenant=tenant, events=len(events))
    if refusal is not None:
        raise Overloaded(refusal)
    accepted_us = now_micros()
    board_id = leaderboard.id
    records = (event if isinstance(event, SubmittedEvent) else submitted_event(event) for event in events)
    return [
        ScoreEvent(
            board_id,
            event.user_id,
            event.points,
            event.event_id or _server_event_ids.next(position),
            accepted_us,
            # A display name is never empty, so UNSET (falsy) and a name tell apart.
            event.display_name or None,
            None if event.metadata is UNSET else metadata_encode(event.metadata),
        )
        for position, event in enumerate(records)
    ]


def score_events_submit(
    *, leaderboard: Leaderboard, events: Sequence[SubmittedEvent | Mapping[str, Any]], tenant: str | None = None
) -> int:
    """Admit and stamp the events, and return once the broker confirmed the message that
    carries them (BrokerUnavailable otherwise): the web tier's write, and the tests'."""
    batch = score_events_stamp(leaderboard=leaderboard, events=events, tenant=tenant)
    if batch:
        ingest_publisher().publish(batch)
    return len(batch)


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


def _upsert_conflict_sql(group: _Group) -> str:
    """How this batch's change ("EXCLUDED") meets the stored row ("s"), for both ways of
    writing rows. A row the change cannot move is left alone (the WHERE) and read back by
    ``_CURRENT_ROWS_SQL``."""
    if group.aggregation == Aggregation.SUM:
        sign = "-" if group.desc else ""
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
        ON CONFLICT (user_id, leaderboard_id, period) DO UPDATE SET {update}, version = s.version + 1
        WHERE {where}
        RETURNING leaderboard_id, period, user_id, score, reached_at, version
    """


_UPSERT_INTO = """
    INSERT INTO scores_score AS s
        (user_id, leaderboard_id, period, score, sort_key, reached_at, reached_by, version, exact_total)
"""


def _upsert_sql(group: _Group) -> str:
    """One statement per group, from arrays (plain PostgreSQL).

    Rows are inserted in key order, so concurrent batches lock rows in one order and
    cannot deadlock; groups run in a fixed order for the same reason.
    """
    sign = "-" if group.desc else ""
    return f"""{_UPSERT_INTO}
        SELECT t.u, t.b, t.p, t.v, {sign}t.v, t.r, t.e, 1,
               CASE WHEN abs(t.x::numeric) > {INT64_MAX} THEN t.x::numeric END
        FROM (SELECT t.u, t.b, t.p, t.v, {_FROM_MICROS.format("t.r")} AS r, t.e, t.x
              FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[], %(values)s::bigint[],
                          %(reached)s::bigint[], %(by)s::text[], %(exact)s::text[]) AS t(u, b, p, v, r, e, x)) AS t
        ORDER BY t.u, t.b, t.p
        {_upsert_conflict_sql(group)}
    """


# Microseconds since the epoch as a timestamptz, exactly (no float on the way).
_FROM_MICROS = "('epoch'::timestamptz + {} * interval '1 microsecond')"

_RECORD_EVENTS_INTO = "INSERT INTO scores_processedevent (user_id, leaderboard_id, event_id, applied_at)"
_RECORD_EVENTS_CONFLICT = "ON CONFLICT DO NOTHING RETURNING user_id, leaderboard_id, event_id"
_RECORD_EVENTS_SQL = f"""
    {_RECORD_EVENTS_INTO}
    SELECT t.u, t.b, t.e, %(now)s
    FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(events)s::text[]) AS t(u, b, e)
    ORDER BY t.u, t.b, t.e
    {_RECORD_EVENTS_CONFLICT}
"""

# Rows a zero-points event creates (a user on the board at 0), in key order; existing
# rows are left alone and read back like every other row the batch did not move.
_TOUCH_INTO = """
    INSERT INTO scores_score AS s
        (user_id, leaderboard_id, period, score, sort_key, reached_at, reached_by, version)
"""
_TOUCH_CONFLICT = """
    ON CONFLICT (user_id, leaderboard_id, period) DO NOTHING
    RETURNING leaderboard_id, period, user_id, score, reached_at, version
"""
_TOUCH_SQL = f"""{_TOUCH_INTO}
    SELECT t.u, t.b, t.p, 0, 0, t.r, '', 1
    FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[], %(reached)s::timestamptz[])
         AS t(u, b, p, r)
    ORDER BY t.u, t.b, t.p
    {_TOUCH_CONFLICT}
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


def _key_arrays(keys: Sequence[RowKey]) -> dict[str, str | list[str]]:
    return {
        "users": _text_array(k.user_id for k in keys),
        "boards": _int_array(k.leaderboard_id for k in keys),
        "periods": _text_array(k.period for k in keys),
    }


def _key_order(key: RowKey) -> tuple[str, int, str]:
    return (key.user_id, key.leaderboard_id, key.period)


def _group_order(group: _Group) -> tuple[str, bool]:
    return (group.aggregation, group.desc)


# (user_id, leaderboard_id, event_id): one processed-event row.
EventKey = tuple[str, int, str]


@dataclass(frozen=True)
class _Write:
    """One score statement: an upsert of a group's changed rows, or (group None) an insert
    of rows only zero-points events reached; the keys in the order their locks are taken."""

    group: _Group | None
    keys: list[RowKey]


@dataclass
class _ScorePlan:
    """The score statements of a batch (or of one shard's part of it), in order."""

    writes: list[_Write] = field(default_factory=list)
    changes: dict[RowKey, _Change] = field(default_factory=dict)
    idle: dict[RowKey, int] = field(default_factory=dict)  # key -> latest accepted time


@dataclass
class _Fresh:
    """A part's events against the event ids it recorded: the rows it concerns, and the
    events that are new for each."""

    touched: set[RowKey] = field(default_factory=set)
    events: dict[RowKey, list[ScoreEvent]] = field(default_factory=lambda: defaultdict(list))
    # Rows an event of the batch (fresh or not) gave a display name or metadata: the
    # hand-off carries their profile, so a redelivered batch re-sends it too.
    profiled: set[RowKey] = field(default_factory=set)

    def profile_changes(self) -> dict[RowKey, ProfileChange]:
        return {key: change for key in self.profiled if (change := profile_change(self.events.get(key, ())))}


def _fresh_events(
    boards: dict[int, Leaderboard],
    unique: dict[EventKey, ScoreEvent],
    fresh_ids: set[EventKey],
    tombstones: Tombstones,
) -> _Fresh:
    found = _Fresh()
    for event_key, event in unique.items():
        if is_erased(tombstones.of(event.user_id, event.leaderboard_id), event.accepted_us):
            # Dropped, and its row not handed off (the erasure removes it); its id is
            # recorded, so a resend of it is not counted later either.
            continue
        board = boards[event.leaderboard_id]
        key = RowKey(event.user_id, board.id, board.period_of(event.accepted_us))
        found.touched.add(key)
        if event.display_name is not None or event.metadata is not None:
            found.profiled.add(key)
        if event_key in fresh_ids:
            found.events[key].append(event)
    return found


def _score_plan(boards: dict[int, Leaderboard], fresh: _Fresh, *, touches_in_key_order: bool) -> _ScorePlan:
    """Aggregate the fresh events per row and order the statements that write them.

    Groups in a fixed order, keys in key order within each. ``touches_in_key_order``
    (Citus): a group's zero-points rows are written between its upserts, in one key
    order, so every score row is locked in (group, key) order. Plain PostgreSQL writes
    them last in one statement: a key that is an upsert in one batch and a touch in
    another can then be locked in opposite orders, which its local deadlock detector
    resolves within a second (rare: a user's only fresh events all zero points).
    """
    plan = _ScorePlan()
    by_group: dict[_Group, set[RowKey]] = defaultdict(set)
    for key, key_events in fresh.events.items():
        board = boards[key.leaderboard_id]
        change = _aggregate(board, key_events)
        if change is None:
            plan.idle[key] = max(e.accepted_us for e in key_events)
        else:
            plan.changes[key] = change
        by_group[_Group(board.aggregation, board.order == Order.DESC)].add(key)
    for group in sorted(by_group, key=_group_order):
        keys = sorted(by_group[group], key=_key_order)
        if touches_in_key_order:
            for is_idle, run in groupby(keys, key=plan.idle.__contains__):
                plan.writes.append(_Write(None if is_idle else group, list(run)))
        else:
            changed = [key for key in keys if key in plan.changes]
            if changed:
                plan.writes.append(_Write(group, changed))
    if not touches_in_key_order and plan.idle:
        plan.writes.append(_Write(None, sorted(plan.idle, key=_key_order)))
    return plan


@dataclass(frozen=True)
class _ArrayStatements:
    """Plain PostgreSQL: the whole batch in one ``INSERT … SELECT FROM unnest(…)`` per table
    and group, the rows sorted by key in the statement."""

    cursor: CursorWrapper

    def record_events(self, ids: Sequence[EventKey], applied_at: datetime) -> set[EventKey]:
        self.cursor.execute(
            _RECORD_EVENTS_SQL,
            {
                "now": applied_at,
                "users": _text_array(k[0] for k in ids),
                "boards": _int_array(k[1] for k in ids),
                "events": _text_array(k[2] for k in ids),
            },
        )
        return {tuple(row) for row in self.cursor.fetchall()}

    def write(self, write: _Write, plan: _ScorePlan) -> list[ChangedRow]:
        keys = write.keys
        if write.group is None:
            reached = [from_micros(plan.idle[k]) for k in keys]
            self.cursor.execute(_TOUCH_SQL, {**_key_arrays(keys), "reached": reached})
        else:
            changes = plan.changes
            self.cursor.execute(
                _upsert_sql(write.group),
                {
                    **_key_arrays(keys),
                    "values": _int_array(_clamp(changes[k].value) for k in keys),
                    # The batch's exact value ("sum" keeps it when it is beyond the bigint range).
                    "exact": _text_array(str(changes[k].value) for k in keys),
                    "reached": _int_array(changes[k].reached_us for k in keys),
                    "by": _text_array(changes[k].reached_by for k in keys),
                },
            )
        return _as_changed(self.cursor.fetchall())


# Text written into the statement as it is: the id and period alphabets (validated at the
# door), server event ids ("~") and ISO timestamps. Anything else is quoted by psycopg.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9_.:~+ -]*\Z")


class _ShardStatements:
    """Citus: one shard's rows in a multi-row ``INSERT … VALUES`` per table and group,
    each on a cursor of its own, so that a pipeline can send many before reading any.

    Citus plans an ``INSERT … SELECT FROM unnest(…)`` "pull to coordinator" whatever rows
    it holds: the rows go to the workers as intermediate results, and the tasks of all
    shards run in parallel under shard locks held to the commit, which let only one such
    batch at a time write a shard. A multi-row VALUES whose rows all fall in one shard
    is router-planned: one task, sent to the worker as written (rows in that order), no
    shard lock (tests/test_citus_ingest.py checks the plans).
    """

    def __init__(self) -> None:
        self.cursors: list[CursorWrapper] = []

    def _text(self, value: str) -> str:
        if _PLAIN_TEXT.match(value):
            return f"'{value}'"
        return sql.Literal(value).as_string(connection.connection)

    def _moment(self, moment: datetime) -> str:
        return self._text(moment.isoformat())

    def _send(self, head: str, rows: Iterable[str], tail: str) -> CursorWrapper:
        cursor = connection.cursor()
        cursor.execute(f"{head} VALUES {','.join(rows)} {tail}")
        self.cursors.append(cursor)
        return cursor

    def record_events(self, ids: Sequence[EventKey], applied_at: datetime) -> CursorWrapper:
        at = self._moment(applied_at)
        rows = (f"({self._text(u)},{int(b)},{self._text(e)},{at})" for u, b, e in ids)
        return self._send(_RECORD_EVENTS_INTO, rows, _RECORD_EVENTS_CONFLICT)

    def write(self, write: _Write, plan: _ScorePlan) -> CursorWrapper:
        if write.group is None:
            rows = [
                f"({self._text(k.user_id)},{int(k.leaderboard_id)},{self._text(k.period)},0,0,"
                f"{self._moment(from_micros(plan.idle[k]))},'',1)"
                for k in write.keys
            ]
            return self._send(_TOUCH_INTO, rows, _TOUCH_CONFLICT)
        sign = -1 if write.group.desc else 1
        rows = []
        for k in write.keys:
            change = plan.changes[k]
            value = _clamp(change.value)
            # The batch's exact value ("sum" keeps it when it is beyond the bigint range).
            exact = str(change.value) if abs(change.value) > INT64_MAX else "NULL"
            rows.append(
                f"({self._text(k.user_id)},{int(k.leaderboard_id)},{self._text(k.period)},{value},{sign * value},"
                f"{self._moment(from_micros(change.reached_us))},{self._text(change.reached_by)},1,{exact})"
            )
        return self._send(_UPSERT_INTO, rows, _upsert_conflict_sql(write.group))

    def profiles(self, changes: dict[RowKey, ProfileChange]) -> CursorWrapper:
        cursor = connection.cursor()
        cursor.execute(profiles_upsert_values_sql(changes))
        self.cursors.append(cursor)
        return cursor

    def close(self) -> None:
        for cursor in self.cursors:
            cursor.close()
        self.cursors.clear()


@contextmanager
def _pipelined() -> Iterator[None]:
    """Statements sent one after the other without waiting for each one's answer (psycopg's
    pipeline mode): PostgreSQL still runs them one at a time, in the order sent. Errors
    surface when the block ends, as Django's database errors (the task retries those)."""
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


def _shard_parts(cursor: CursorWrapper, unique: dict[EventKey, ScoreEvent]) -> list[dict[EventKey, ScoreEvent]]:
    """The batch's events cut by the shard of their user, in ascending shard id."""
    shards = user_shards(cursor, _text_array(sorted({user for user, _, _ in unique})))
    parts: dict[int, dict[EventKey, ScoreEvent]] = defaultdict(dict)
    for event_key, event in unique.items():
        parts[shards[event_key[0]]][event_key] = event
    return [parts[shard] for shard in sorted(parts)]


@dataclass
class _Applied:
    """What a batch wrote: the rows it changed, the rows it concerns, its new event ids,
    the profiles it changed and the rows whose profile it hands off."""

    changed: list[ChangedRow]
    touched: set[RowKey]
    fresh_ids: set[EventKey]
    profiles: list[StoredProfile] = field(default_factory=list)
    profiled: set[RowKey] = field(default_factory=set)


def _apply_in_one(
    cursor: CursorWrapper,
    boards: dict[int, Leaderboard],
    unique: dict[EventKey, ScoreEvent],
    applied_at: datetime,
    tombstones: Tombstones,
) -> _Applied:
    """Plain PostgreSQL: the event ids in one statement, then one per group."""
    statements = _ArrayStatements(cursor)
    fresh_ids = statements.record_events(sorted(unique), applied_at)
    fresh = _fresh_events(boards, unique, fresh_ids, tombstones)
    plan = _score_plan(boards, fresh, touches_in_key_order=False)
    changed = [row for write in plan.writes for row in statements.write(write, plan)]
    profile_changes = fresh.profile_changes()
    profiles = profiles_upsert_arrays(cursor, profile_changes) if profile_changes else []
    return _Applied(changed, fresh.touched, fresh_ids, profiles, fresh.profiled)


def _apply_by_shard(
    cursor: CursorWrapper,
    boards: dict[int, Leaderboard],
    unique: dict[EventKey, ScoreEvent],
    applied_at: datetime,
    tombstones: Tombstones,
) -> _Applied:
    """Citus: the statements of each shard alone, in ascending shard id; the event ids of
    every shard first (one pipeline), then the score rows of every shard and then their
    profiles (another)."""
    parts = _shard_parts(cursor, unique)
    statements = _ShardStatements()
    try:
        with _pipelined():
            recorded = [statements.record_events(sorted(part), applied_at) for part in parts]
        fresh_ids = [{tuple(row) for row in sent.fetchall()} for sent in recorded]
        fresh = [_fresh_events(boards, part, ids, tombstones) for part, ids in zip(parts, fresh_ids, strict=True)]
        plans = [_score_plan(boards, part, touches_in_key_order=True) for part in fresh]
        profile_changes = [changes for part in fresh if (changes := part.profile_changes())]
        with _pipelined():
            written = [statements.write(write, plan) for plan in plans for write in plan.writes]
            profiled = [statements.profiles(changes) for changes in profile_changes]
        changed = [row for sent in written for row in _as_changed(sent.fetchall())]
        profiles = [stored for sent in profiled for stored in profiles_from_rows(sent.fetchall())]
    finally:
        statements.close()
    return _Applied(
        changed,
        {key for part in fresh for key in part.touched},
        {key for ids in fresh_ids for key in ids},
        profiles,
        {key for part in fresh for key in part.profiled},
    )


def score_events_apply(*, events: Sequence[ScoreEvent], now: datetime | None = None) -> list[ChangedRow]:
    """Apply events exactly once and return the current rows of every user they touched.

    Users whose events were all duplicates (or could not move their row) are returned
    too: after a crash between the commit and the hand-off to ranking, the redelivered
    batch re-sends their rows, so the ranking side never misses a change.

    Lock order. Every transaction takes its row locks (and its waits on another
    transaction's uncommitted event id or score row) in one total order, so no two can
    wait on each other in a cycle: a transaction only ever waits for a lock above all it
    holds, and a cycle would need a lock above itself.
    - Plain PostgreSQL: event ids in key order, then score rows group by group in key
      order (then the zero-points rows), each table in one statement.
    - Citus: statements run on the workers, and a cycle can span nodes, which the local
      detectors do not see (Citus's distributed detector cancels one side after about
      2 s). The batch is cut by shard; each shard's statements are router-planned to
      that shard alone and run one at a time, in this order: the event ids of every
      shard in ascending shard id (each in user, board, event id order), then the score
      rows of every shard in ascending shard id (each by group, then key). Every lock is
      therefore taken in the order (table, shard id, group, key), on whichever node the
      shard lives, and the coordinator waits on one worker at a time. Rebalancing moves
      shards without changing their ids; a split makes new ids (and a statement that
      spans the halves runs as a Citus multi-row INSERT: its tasks one by one, in shard
      id order, the same order).
    - Outside this order: the top-N row lock (rank tasks) is one row of another table,
      held alone, and ingest never waits for it; rank reads take no locks. Board
      deletion removes rows only after ingest has stopped taking the board (it is marked
      first; the boards memo lasts up to a second), and marking it locks the board's
      reference-table row on every node, which ingest's deferred foreign-key checks
      share (FOR KEY SHARE at commit): a batch still committing for that board when it
      is marked may deadlock with the marking; the detector cancels one and the task
      retries (README, Citus).

    A board deleted in the second this process trusts its boards memo for meets the
    foreign key at commit: the transaction is tried once more with the boards read
    afresh, which drops that board's events, so the others in the batch still apply.
    """
    try:
        return _score_events_apply(events, now)
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, pg_errors.ForeignKeyViolation):
            raise
        logger.warning("a board of this batch was deleted under its memo (%s); reading the boards again", exc)
        cached_boards_forget()
        return _score_events_apply(events, now)


def _score_events_apply(events: Sequence[ScoreEvent], now: datetime | None) -> list[ChangedRow]:
    boards = leaderboards_by_id({event.leaderboard_id for event in events})
    unique: dict[EventKey, ScoreEvent] = {}
    for event in events:
        if event.leaderboard_id not in boards:
            logger.warning("dropping event for deleted leaderboard %s", event.leaderboard_id)
            continue
        # Of two copies of one event in the batch, the first accepted is the event (what a
        # duplicate carries changes nothing, whichever message came first).
        key = (event.user_id, event.leaderboard_id, event.event_id)
        held = unique.get(key)
        if held is None or event.accepted_us < held.accepted_us:
            unique[key] = event
    if not unique:
        return []

    with transaction.atomic(), connection.cursor() as cursor:
        applied_at = now or from_micros(now_micros())
        # Erased users (scores.tombstones): read in this transaction, before any write.
        tombstones = tombstones_read(cursor, _text_array(sorted({event.user_id for event in unique.values()})))
        apply = _apply_by_shard if scores_distributed(cursor) else _apply_in_one
        applied = apply(cursor, boards, unique, applied_at, tombstones)
        changed, fresh_ids = applied.changed, applied.fresh_ids
        moved = {RowKey(c.row.user_id, c.leaderboard_id, c.period) for c in changed}
        unmoved = sorted(applied.touched - moved, key=_key_order)
        if unmoved:
            # A read: no row locks, on every shard at once.
            cursor.execute(_CURRENT_ROWS_SQL, _key_arrays(unmoved))
            changed += _as_changed(cursor.fetchall())
        if applied.profiled:
            changed = _with_profiles(cursor, changed, applied)
    _record_applied(boards, unique, fresh_ids)
    return changed


def _with_profiles(cursor: CursorWrapper, changed: list[ChangedRow], applied: _Applied) -> list[ChangedRow]:
    """Attach each profiled row's stored profile: as this batch wrote it, or (its events'
    fields were older, or duplicates) as it stands."""
    stored = {profile.key: profile for profile in applied.profiles}
    stored.update((p.key, p) for p in profiles_current(cursor, applied.profiled - stored.keys()))
    attached = []
    for change in changed:
        profile = stored.get(RowKey(change.row.user_id, change.leaderboard_id, change.period))
        if profile is not None:
            change = msgspec.structs.replace(change, profile=profile.copy)
        attached.append(change)
    return attached


def _record_applied(
    boards: dict[int, Leaderboard], unique: dict[EventKey, ScoreEvent], fresh_ids: set[EventKey]
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
