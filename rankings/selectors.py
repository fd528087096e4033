"""Reads: leaderboards, the top-N and a user's rank, from Redis with the database behind it."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from redis.exceptions import RedisError

from leaderboard_project.memo import MISSING, SharedVersionWatch, TtlMemo
from rankings import cache
from rankings.board_versions import boards_version_read
from rankings.models import Leaderboard, Order, TopN
from rankings.ordering import from_micros, parse_member, to_micros
from tasks.messages import Row

logger = logging.getLogger(__name__)

# Workers look boards up per batch; boards' ranking fields never change after creation,
# so a short-lived per-process copy is safe and saves a query per batch. A board deleted
# (or hidden for deletion) and made again under its slug moves the shared boards version,
# which each process checks at most once per LEADERBOARD_BOARD_MEMO_CHECK_SECONDS.
_boards_by_id = TtlMemo(ttl_seconds=30.0)
_boards_by_slug = TtlMemo(ttl_seconds=30.0)
_boards_watch = SharedVersionWatch(
    boards_version_read,
    [_boards_by_id, _boards_by_slug],
    interval_seconds=settings.LEADERBOARD_BOARD_MEMO_CHECK_SECONDS,
)


def _live_boards() -> QuerySet[Leaderboard]:
    # A board being deleted (tasks.cleanup) is gone for readers and for ingest at once.
    return Leaderboard.objects.filter(deleting=False)


def leaderboards_by_id(ids: set[int]) -> dict[int, Leaderboard]:
    _boards_watch.check()
    found = {i: board for i in ids if (board := _boards_by_id.get(i)) is not MISSING}
    missing = ids - found.keys()
    if missing:
        for board in _live_boards().filter(id__in=missing):
            _boards_by_id.put(board.id, board)
            found[board.id] = board
    return found


def is_desc(board: Leaderboard) -> bool:
    return board.order == Order.DESC


def _order_sql(direction: str = "") -> str:
    # user_id has the "C" collation, so the database orders it by code point like Python.
    return f"sort_key {direction}, reached_at {direction}, user_id {direction}"


def index_head_rows(*, leaderboard: Leaderboard, period: str, limit: int) -> list[Row] | None:
    """The rank index's first rows (version 0: members carry none); None while it is
    incomplete."""
    head = cache.index_head(cache.redis_client(), leaderboard.id, period, limit)
    if head is None:
        return None
    return [Row(*parse_member(member, is_desc(leaderboard)), 0) for member in head]


def db_top_rows(*, leaderboard: Leaderboard, period: str, limit: int) -> list[Row]:
    """The exact top rows from the score table (uses the ranking index)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT user_id, score, reached_at, version FROM scores_score
                WHERE leaderboard_id = %s AND period = %s ORDER BY {_order_sql()} LIMIT %s""",
            [leaderboard.id, period, limit],
        )
        return [Row(u, s, to_micros(r), v) for u, s, r, v in cursor.fetchall()]


def db_rows_of(*, leaderboard: Leaderboard, period: str, user_ids: list[str]) -> dict[str, Row]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT user_id, score, reached_at, version FROM scores_score
               WHERE leaderboard_id = %s AND period = %s AND user_id = ANY(%s)""",
            [leaderboard.id, period, user_ids],
        )
        return {u: Row(u, s, to_micros(r), v) for u, s, r, v in cursor.fetchall()}


@dataclass(frozen=True)
class TopView:
    as_of: datetime | None
    entries: list[dict[str, Any]]


def _entries(rows: Sequence[Sequence | Row], first_rank: int = 1) -> list[dict[str, Any]]:
    """Ranked entries of rows in rank order: ``Row``s, or sequences that start with
    (user_id, score) such as JSON-stored rows and parsed index members."""
    pairs = ((r.user_id, r.score) if isinstance(r, Row) else (r[0], r[1]) for r in rows)
    return [{"rank": first_rank + i, "user_id": user_id, "score": score} for i, (user_id, score) in enumerate(pairs)]


def leaderboard_top(*, leaderboard: Leaderboard, limit: int, strategy: str) -> TopView:
    period = leaderboard.current_period()
    try:
        if strategy == "sorted_set":
            rows = index_head_rows(leaderboard=leaderboard, period=period, limit=limit)
            if rows is not None:
                return TopView(as_of=None, entries=_entries(rows))
        else:
            cached = cache.top_read(cache.redis_client(), leaderboard.id, period)
            if cached is not None:
                as_of = from_micros(cached["as_of"]) if cached.get("as_of") else None
                return TopView(as_of=as_of, entries=_entries(cached["entries"][:limit]))
    except RedisError as exc:
        logger.warning("top-N of %s read from the database: Redis failed (%s)", leaderboard.slug, exc)
    return _top_from_database(leaderboard=leaderboard, period=period, limit=limit, strategy=strategy)


def _top_from_database(*, leaderboard: Leaderboard, period: str, limit: int, strategy: str) -> TopView:
    # Imported here: services depend on selectors, not the other way round.
    from rankings.services import board_repair_request, topn_cache_refill

    # A cold cache means Redis lost its data: what was in flight may be missing from the
    # table too, so a rank worker recomputes both while this read answers.
    board_repair_request(leaderboard=leaderboard, period=period)
    top = TopN.objects.filter(leaderboard=leaderboard, period=period).first()
    if strategy == "sorted_set" or top is None:
        rows = db_top_rows(leaderboard=leaderboard, period=period, limit=limit)
        return TopView(as_of=None, entries=_entries(rows))
    topn_cache_refill(top=top)
    return TopView(as_of=top.as_of, entries=_entries(top.entries[:limit]))


@dataclass(frozen=True)
class UserRankView:
    user_id: str
    score: int
    rank: int
    total: int
    around: list[dict[str, Any]]


def leaderboard_user_rank(*, leaderboard: Leaderboard, user_id: str, around: int) -> UserRankView | None:
    """A user's exact rank, score, board total and neighbours; None when not on the board."""
    period = leaderboard.current_period()
    desc = is_desc(leaderboard)
    try:
        answer = cache.index_read_rank(cache.redis_client(), leaderboard.id, period, user_id, around)
    except RedisError as exc:
        logger.warning("rank on %s read from the database: Redis failed (%s)", leaderboard.slug, exc)
        answer = None
    if answer is not None:
        if len(answer) == 1:
            return None
        total, rank0, first0, *members = answer
        neighbours = _entries([parse_member(m.decode(), desc) for m in members], first_rank=first0 + 1)
        own = neighbours[rank0 - first0]
        return UserRankView(user_id=user_id, score=own["score"], rank=rank0 + 1, total=total, around=neighbours)

    from rankings.services import board_repair_request

    board_repair_request(leaderboard=leaderboard, period=period)
    return _user_rank_from_database(leaderboard=leaderboard, period=period, user_id=user_id, around=around)


def _user_rank_from_database(
    *, leaderboard: Leaderboard, period: str, user_id: str, around: int
) -> UserRankView | None:
    # Slow at scale (it counts), used only while the Redis index is being rebuilt.
    order = _order_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sort_key, reached_at, score FROM scores_score WHERE leaderboard_id = %s AND period = %s "
            "AND user_id = %s",
            [leaderboard.id, period, user_id],
        )
        found = cursor.fetchone()
        if found is None:
            return None
        sort_key, reached_at, score = found
        position = "(sort_key, reached_at, user_id)"
        base = "FROM scores_score WHERE leaderboard_id = %s AND period = %s"
        cursor.execute(
            f"SELECT count(*) FILTER (WHERE {position} < (%s, %s, %s)), count(*) {base}",
            [sort_key, reached_at, user_id, leaderboard.id, period],
        )
        before, total = cursor.fetchone()
        cursor.execute(
            f"SELECT user_id, score FROM (SELECT user_id, score, sort_key, reached_at {base} "
            f"AND {position} < (%s, %s, %s) ORDER BY {_order_sql('DESC')} LIMIT %s) t "
            f"ORDER BY {order}",
            [leaderboard.id, period, sort_key, reached_at, user_id, around],
        )
        above = cursor.fetchall()
        cursor.execute(
            f"SELECT user_id, score {base} AND {position} > (%s, %s, %s) ORDER BY {order} LIMIT %s",
            [leaderboard.id, period, sort_key, reached_at, user_id, around],
        )
        below = cursor.fetchall()
    rank = before + 1
    neighbours = _entries([*above, (user_id, score), *below], first_rank=rank - len(above))
    return UserRankView(user_id=user_id, score=score, rank=rank, total=total, around=neighbours)


def leaderboard_by_slug(*, slug: str) -> Leaderboard | None:
    """Every request names its board; a per-process copy saves a query each time."""
    _boards_watch.check()
    board = _boards_by_slug.get(slug)
    if board is MISSING:
        board = _live_boards().filter(slug=slug).first()
        if board is not None:  # a board made a moment later must be found at once
            _boards_by_slug.put(slug, board)
    return board


def cached_boards_forget() -> None:
    """Drop this process's board copies (a board deleted and made again under its slug)."""
    _boards_watch.forget()
