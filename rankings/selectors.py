"""Reads: leaderboards, the top-N and a user's rank, from Redis with the database behind it."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from leaderboard_project.memo import MISSING, SharedVersionWatch, TtlMemo
from rankings import cache
from rankings.board_versions import boards_version_read
from rankings.models import Leaderboard, Order, TopN
from rankings.ordering import from_micros, parse_member, rank_key, to_micros
from rankings.visibility import NOT_HIDDEN
from scores.profiles import entry_fields, profiles_of
from tasks.messages import Row, rows_from_json

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
                WHERE leaderboard_id = %s AND period = %s AND {NOT_HIDDEN} ORDER BY {_order_sql()} LIMIT %s""",
            [leaderboard.id, period, limit],
        )
        return [Row(u, s, to_micros(r), v) for u, s, r, v in cursor.fetchall()]


def db_rows_of(*, leaderboard: Leaderboard, period: str, user_ids: list[str]) -> dict[str, Row]:
    """The rows of those users who are on the board and not hidden: to the merge root a
    hidden candidate or member is one that fell, so it repairs the top-N without them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT user_id, score, reached_at, version FROM scores_score
               WHERE leaderboard_id = %s AND period = %s AND user_id = ANY(%s) AND {NOT_HIDDEN}""",
            [leaderboard.id, period, user_ids],
        )
        return {u: Row(u, s, to_micros(r), v) for u, s, r, v in cursor.fetchall()}


_json = msgspec.json.Encoder()


def render_json(value: Any) -> bytes:
    """JSON as DRF renders it (a UTC datetime as RFC 3339 with "Z"), but without DRF."""
    return _json.encode(value)


@dataclass(frozen=True)
class TopJson:
    """A top-N read, its entries already rendered: the view joins bytes, nothing is re-encoded."""

    as_of: datetime  # when this top-N was written (the read's own time for the live index)
    entries: list[bytes]
    # The TopN version it is a copy of; None when read from the live rank index.
    version: int | None
    # Whether an entry carries a profile: the version alone then does not name the answer.
    profiled: bool = False


@dataclass(frozen=True)
class TopView:
    as_of: datetime | None
    entries: list[dict[str, Any]]


def _entries(rows: Sequence[Sequence | Row], first_rank: int = 1) -> list[dict[str, Any]]:
    """Ranked entries of rows in rank order: ``Row``s, or sequences that start with
    (user_id, score) such as JSON-stored rows and parsed index members."""
    pairs = ((r.user_id, r.score) if isinstance(r, Row) else (r[0], r[1]) for r in rows)
    return [{"rank": first_rank + i, "user_id": user_id, "score": score} for i, (user_id, score) in enumerate(pairs)]


# The fields of an entry nobody gave a display name or metadata.
_NO_FIELDS = entry_fields(None, None)


def _profile_fields(leaderboard: Leaderboard, period: str, user_ids: list[str], *, redis: bool) -> dict[str, bytes]:
    """The rendered profile fields of these users: from Redis when the read came from its
    complete rank index (``redis``), else (or when Redis fails) from the database."""
    if redis:
        try:
            return cache.profiles_read(cache.redis_client(), leaderboard.id, period, user_ids)
        except RedisError as exc:
            logger.warning("profiles on %s read from the database: Redis failed (%s)", leaderboard.slug, exc)
    return profiles_of(leaderboard_id=leaderboard.id, period=period, user_ids=user_ids)


def _with_profiles(
    leaderboard: Leaderboard, period: str, entries: list[dict[str, Any]], *, redis: bool
) -> list[dict[str, Any]]:
    """Entries with their ``display_name`` and ``metadata`` (null when never given)."""
    if entries:
        fields = _profile_fields(leaderboard, period, [e["user_id"] for e in entries], redis=redis)
        for entry in entries:
            entry.update(msgspec.json.decode(b"{" + fields.get(entry["user_id"], _NO_FIELDS) + b"}"))
    return entries


def _rendered_with_profiles(entries: list[bytes], user_ids: list[str], fields: dict[str, bytes]) -> list[bytes]:
    """Rendered entries with the profile fields spliced in before their closing brace."""
    return [
        entry[:-1] + b"," + fields.get(user_id, _NO_FIELDS) + b"}"
        for entry, user_id in zip(entries, user_ids, strict=True)
    ]


def _top_json(
    leaderboard: Leaderboard, period: str, as_of: datetime, rows: Sequence[Row], version: int | None, *, redis: bool
) -> TopJson:
    users = [row.user_id for row in rows]
    fields = _profile_fields(leaderboard, period, users, redis=redis)
    entries = cache.entries_json((row.user_id, row.score) for row in rows)
    return TopJson(as_of, _rendered_with_profiles(entries, users, fields), version, bool(fields))


def _repair_ask(leaderboard: Leaderboard, period: str) -> None:
    """A read that found the Redis side incomplete asks a rank worker to repair it (a
    task message, at most one per board every 10 s): it never writes the caches itself."""
    # Imported here: services depend on selectors, not the other way round.
    from rankings.services import board_repair_request

    board_repair_request(leaderboard=leaderboard, period=period)


def leaderboard_top_json(*, leaderboard: Leaderboard, period: str, limit: int, strategy: str) -> TopJson:
    """The first ``limit`` of the board's top-N: one Redis round trip, or the database."""
    try:
        if strategy == "sorted_set":
            rows = index_head_rows(leaderboard=leaderboard, period=period, limit=limit)
            if rows is not None:
                # The index is live: it is as of now.
                return _top_json(leaderboard, period, timezone.now(), rows, None, redis=True)
        else:
            cached = cache.top_read(cache.redis_client(), leaderboard.id, period, limit)
            if cached is not None:
                as_of = from_micros(cached.as_of_us)
                if cached.profiles == 0:  # the common board: nobody has a profile
                    entries = [entry[:-1] + b"," + _NO_FIELDS + b"}" for entry in cached.entries]
                    return TopJson(as_of, entries, cached.version)
                users = [cache.entry_user_id(entry) for entry in cached.entries]
                fields = _profile_fields(leaderboard, period, users, redis=cached.profiles is not None)
                entries = _rendered_with_profiles(cached.entries, users, fields)
                return TopJson(as_of, entries, cached.version, bool(fields))
    except RedisError as exc:
        logger.warning("top-N of %s read from the database: Redis failed (%s)", leaderboard.slug, exc)
    return _top_from_database(leaderboard=leaderboard, period=period, limit=limit, strategy=strategy)


def leaderboard_top(*, leaderboard: Leaderboard, limit: int, strategy: str, period: str | None = None) -> TopView:
    """The top-N as plain data (checks and tools; the API serves ``leaderboard_top_json``)."""
    top = leaderboard_top_json(
        leaderboard=leaderboard, period=period or leaderboard.current_period(), limit=limit, strategy=strategy
    )
    return TopView(as_of=top.as_of, entries=msgspec.json.decode(b"[" + b",".join(top.entries) + b"]"))


def _top_from_database(*, leaderboard: Leaderboard, period: str, limit: int, strategy: str) -> TopJson:
    # A cold cache means Redis lost its data: what was in flight may be missing from the
    # table too, so a rank worker recomputes both (and refills Redis) while this read
    # answers. Reads never write: asking is all a read does.
    _repair_ask(leaderboard, period)
    top = TopN.objects.filter(leaderboard=leaderboard, period=period).first()
    if strategy == "sorted_set" or top is None or top.as_of is None:
        rows = db_top_rows(leaderboard=leaderboard, period=period, limit=limit)
        return _top_json(leaderboard, period, timezone.now(), rows, None, redis=False)
    stored = rows_from_json(top.entries[:limit])
    return _top_json(leaderboard, period, top.as_of, stored, top.version, redis=False)


@dataclass(frozen=True)
class UserRankView:
    user_id: str
    score: int
    rank: int
    total: int
    # 100 x rank / total: the user is in the top top_percent % of the board.
    top_percent: float
    display_name: str | None
    metadata: dict[str, Any] | None
    around: list[dict[str, Any]]


def _top_percent(rank: int, total: int) -> float:
    return 100.0 * rank / total


def leaderboard_user_rank(
    *, leaderboard: Leaderboard, user_id: str, around: int, period: str | None = None
) -> UserRankView | None:
    """A user's exact rank, score, board total and neighbours in a period (default the
    current one); None when not on the board."""
    period = period or leaderboard.current_period()
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
        neighbours = _with_profiles(leaderboard, period, neighbours, redis=True)
        own = neighbours[rank0 - first0]
        return UserRankView(
            user_id=user_id,
            score=own["score"],
            rank=rank0 + 1,
            total=total,
            top_percent=_top_percent(rank0 + 1, total),
            display_name=own["display_name"],
            metadata=own["metadata"],
            around=neighbours,
        )

    _repair_ask(leaderboard, period)
    return _user_rank_from_database(leaderboard=leaderboard, period=period, user_id=user_id, around=around)


def _user_rank_from_database(
    *, leaderboard: Leaderboard, period: str, user_id: str, around: int
) -> UserRankView | None:
    # Slow at scale (it counts), used only while the Redis index is being rebuilt.
    order = _order_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sort_key, reached_at, score FROM scores_score WHERE leaderboard_id = %s AND period = %s "
            f"AND user_id = %s AND {NOT_HIDDEN}",
            [leaderboard.id, period, user_id],
        )
        found = cursor.fetchone()
        if found is None:
            return None
        sort_key, reached_at, score = found
        position = "(sort_key, reached_at, user_id)"
        base = f"FROM scores_score WHERE leaderboard_id = %s AND period = %s AND {NOT_HIDDEN}"
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
    neighbours = _with_profiles(leaderboard, period, neighbours, redis=False)
    own = neighbours[len(above)]
    return UserRankView(
        user_id=user_id,
        score=score,
        rank=rank,
        total=total,
        top_percent=_top_percent(rank, total),
        display_name=own["display_name"],
        metadata=own["metadata"],
        around=neighbours,
    )


@dataclass(frozen=True)
class RankRange:
    """Ranks ``start`` .. ``start + count - 1`` of one board and period, and its total."""

    total: int
    entries: list[dict[str, Any]]


def leaderboard_rank_range(*, leaderboard: Leaderboard, period: str, start: int, count: int) -> RankRange:
    """Any exact rank range from the rank index (a ZRANGE, O(log n + count) at any
    depth); from the database while the index is not complete."""
    try:
        answer = cache.index_read_range(cache.redis_client(), leaderboard.id, period, start - 1, count)
    except RedisError as exc:
        logger.warning("rank range on %s read from the database: Redis failed (%s)", leaderboard.slug, exc)
        answer = None
    if answer is not None:
        total, *members = answer
        desc = is_desc(leaderboard)
        entries = _entries([parse_member(m.decode(), desc) for m in members], first_rank=start)
        return RankRange(total, _with_profiles(leaderboard, period, entries, redis=True))
    _repair_ask(leaderboard, period)
    return _rank_range_from_database(leaderboard=leaderboard, period=period, start=start, count=count)


def _rank_range_from_database(*, leaderboard: Leaderboard, period: str, start: int, count: int) -> RankRange:
    # OFFSET walks the ranking index (score_ranking_idx) from the top: O(start + count)
    # index entries, and the total is a count of the board. Only while Redis rebuilds.
    base = f"FROM scores_score WHERE leaderboard_id = %s AND period = %s AND {NOT_HIDDEN}"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) {base}", [leaderboard.id, period])
        (total,) = cursor.fetchone()
        rows: list[tuple[str, int]] = []
        if start <= total:
            cursor.execute(
                f"SELECT user_id, score {base} ORDER BY {_order_sql()} OFFSET %s LIMIT %s",
                [leaderboard.id, period, start - 1, count],
            )
            rows = cursor.fetchall()
    return RankRange(total, _with_profiles(leaderboard, period, _entries(rows, first_rank=start), redis=False))


def leaderboard_ranks_of(*, leaderboard: Leaderboard, period: str, user_ids: list[str]) -> list[dict[str, Any]]:
    """The ranked entries of those of ``user_ids`` on the board, by rank (a friends board):
    one Redis round trip, a ZRANK each; from the database while the index is not complete."""
    try:
        answer = cache.index_read_ranks_of(cache.redis_client(), leaderboard.id, period, user_ids)
    except RedisError as exc:
        logger.warning("ranks of users on %s read from the database: Redis failed (%s)", leaderboard.slug, exc)
        answer = None
    if answer is None:
        _repair_ask(leaderboard, period)
        return _ranks_of_from_database(leaderboard=leaderboard, period=period, user_ids=user_ids)
    desc = is_desc(leaderboard)
    found = sorted(zip(answer[::2], answer[1::2], strict=True))
    entries = [_entry(rank0 + 1, *parse_member(member.decode(), desc)[:2]) for rank0, member in found]
    return _with_profiles(leaderboard, period, entries, redis=True)


def _entry(rank: int, user_id: str, score: int) -> dict[str, Any]:
    return {"rank": rank, "user_id": user_id, "score": score}


def _ranks_of_from_database(*, leaderboard: Leaderboard, period: str, user_ids: list[str]) -> list[dict[str, Any]]:
    # One pass over the ranking index up to the lowest-ranked of the users, counting the
    # rows before each of them: O(that rank x users), and only while Redis rebuilds. One
    # plain aggregate per board also runs unchanged on Citus (no correlated subquery).
    rows = db_rows_of(leaderboard=leaderboard, period=period, user_ids=user_ids)
    if not rows:
        return []
    desc = is_desc(leaderboard)
    ordered = sorted(rows.values(), key=lambda r: rank_key(r, desc))
    positions = [(leaderboard.sort_key_of(r.score), from_micros(r.reached_us), r.user_id) for r in ordered]
    position = "(sort_key, reached_at, user_id)"
    counts = ", ".join(f"count(*) FILTER (WHERE {position} < (%s, %s, %s))" for _ in positions)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {counts} FROM scores_score "
            f"WHERE leaderboard_id = %s AND period = %s AND {position} <= (%s, %s, %s) AND {NOT_HIDDEN}",
            [*(v for p in positions for v in p), leaderboard.id, period, *positions[-1]],
        )
        before = cursor.fetchone()
    entries = [_entry(n + 1, r.user_id, r.score) for n, r in zip(before, ordered, strict=True)]
    return _with_profiles(leaderboard, period, entries, redis=False)


def leaderboard_by_slug(*, slug: str) -> Leaderboard | None:
    """Every request names its board; a per-process copy saves a query each time."""
    _boards_watch.check()
    board = _boards_by_slug.get(slug)
    if board is MISSING:
        board = _live_boards().filter(slug=slug).first()
        if board is not None:  # a board made a moment later must be found at once
            _boards_by_slug.put(slug, board)
    return board


def leaderboard_cached(*, slug: str) -> bool:
    """Whether ``leaderboard_by_slug`` would answer from this process's copy, with no I/O."""
    return not _boards_watch.due() and _boards_by_slug.get(slug) is not MISSING


def cached_boards_forget() -> None:
    """Drop this process's board copies (a board deleted and made again under its slug)."""
    _boards_watch.forget()
