"""Writes on the ranking side: boards, the merge-level steps, the top-N and the rank index.

The merge steps (``partial_from_rows``, ``partials_merge``) are pure; the root
(``topn_publish``) is the only writer of a board's top-N. It takes the board's top-N row
lock, re-reads the candidates' current rows from the database and, when a member of the
current top-N has fallen (or vanished), repairs the list from the database: incremental
merging alone is only exact while scores never decrease.
"""

import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from leaderboard_project.celery import app as celery_app
from rankings import cache, redis_keys
from rankings.models import Leaderboard, TopN
from rankings.ordering import Row, rank_key, to_micros, top_k
from rankings.selectors import db_rows_of, db_top_rows, index_head_rows, is_desc, leaderboards_by_id
from scores.models import Score

logger = logging.getLogger(__name__)

# A partial result of the merge levels: {"<leaderboard_id>:<period>": [row, ...]}.
Partial = dict[str, list[Row]]

REPAIR_BOARD_TASK = "tasks.ranking.repair_board"
_INDEX_BUILD_CHUNK = 2000


def leaderboard_create(**fields: object) -> Leaderboard:
    board = Leaderboard.objects.create(**fields)
    TopN.objects.create(leaderboard=board, period=board.current_period())
    try:
        # A new board has no users, so its (empty) rank index is complete.
        cache.index_mark_ready(cache.redis_client(), board.id, board.current_period())
    except RedisError:
        logger.warning("Redis down at creation of %s; its rank index is rebuilt on first read", board.slug)
    return board


def board_key(leaderboard_id: int, period: str) -> str:
    return f"{leaderboard_id}:{period}"


def split_board_key(key: str) -> tuple[int, str]:
    leaderboard_id, period = key.split(":", 1)
    return int(leaderboard_id), period


def partial_from_rows(*, changed: list[list], index: bool = True) -> Partial:
    """A leaf of the merge levels: feed the rank index, keep each board's top-K candidates."""
    grouped: dict[str, list[Row]] = defaultdict(list)
    for leaderboard_id, period, user_id, score, reached_us, version in changed:
        grouped[board_key(leaderboard_id, period)].append([user_id, score, reached_us, version])
    boards = leaderboards_by_id({split_board_key(key)[0] for key in grouped})
    partial: Partial = {}
    client = cache.redis_client() if index else None
    for key, rows in sorted(grouped.items()):
        leaderboard_id, period = split_board_key(key)
        board = boards.get(leaderboard_id)
        if board is None:
            continue
        if client is not None:
            cache.index_apply(client, leaderboard_id, period, rows, is_desc(board))
        partial[key] = top_k(rows, board.top_n, is_desc(board))
    return partial


def partials_merge(*, partials: list[Partial]) -> Partial:
    """One merge level: the union of the partials, cut to each board's top-K."""
    grouped: dict[str, list[Row]] = defaultdict(list)
    for partial in partials:
        for key, rows in partial.items():
            grouped[key].extend(rows)
    boards = leaderboards_by_id({split_board_key(key)[0] for key in grouped})
    merged: Partial = {}
    for key, rows in sorted(grouped.items()):
        board = boards.get(split_board_key(key)[0])
        if board is not None:
            merged[key] = top_k(rows, board.top_n, is_desc(board))
    return merged


def _locked_top(board: Leaderboard, period: str) -> TopN:
    top, _ = TopN.objects.select_for_update().get_or_create(leaderboard=board, period=period)
    return top


def _fell(current: list[Row], fresh: dict[str, Row], desc: bool) -> bool:
    return any(row[0] not in fresh or rank_key(fresh[row[0]], desc) > rank_key(row, desc) for row in current)


def topn_publish(*, partial: Partial) -> None:
    """The root: merge each board's candidates into its top-N, then publish it."""
    boards = leaderboards_by_id({split_board_key(key)[0] for key in partial})
    for key, candidates in sorted(partial.items()):
        leaderboard_id, period = split_board_key(key)
        board = boards.get(leaderboard_id)
        if board is None:
            continue
        desc = is_desc(board)
        with transaction.atomic():
            top = _locked_top(board, period)
            current: list[Row] = top.entries
            users = {row[0] for row in current} | {row[0] for row in candidates}
            fresh = db_rows_of(leaderboard=board, period=period, user_ids=sorted(users))
            if _fell(current, fresh, desc):
                entries = db_top_rows(leaderboard=board, period=period, limit=board.top_n)
            else:
                entries = top_k(fresh.values(), board.top_n, desc)
            if entries != current:
                _save_top(top, entries)
        topn_cache_refill(top=top)


def topn_rebuild(*, leaderboard: Leaderboard, period: str) -> TopN:
    """Recompute a board's top-N from the database (reconcile, repair, operators)."""
    with transaction.atomic():
        top = _locked_top(leaderboard, period)
        entries = db_top_rows(leaderboard=leaderboard, period=period, limit=leaderboard.top_n)
        if entries != top.entries or top.as_of is None:
            _save_top(top, entries)
    topn_cache_refill(top=top)
    return top


def topn_snapshot_from_index(*, leaderboard: Leaderboard, period: str) -> None:
    """sorted_set strategy: copy the index's head into the admin table (or repair it)."""
    with transaction.atomic():
        top = _locked_top(leaderboard, period)
        entries = index_head_rows(leaderboard=leaderboard, period=period, limit=leaderboard.top_n)
        if entries is None:
            board_repair_request(leaderboard=leaderboard, period=period)
            entries = db_top_rows(leaderboard=leaderboard, period=period, limit=leaderboard.top_n)
        if entries != top.entries:
            _save_top(top, entries)


def _save_top(top: TopN, entries: list[Row]) -> None:
    top.entries = entries
    top.version += 1
    top.as_of = timezone.now()
    top.save(update_fields=["entries", "version", "as_of"])


def topn_cache_refill(*, top: TopN) -> None:
    payload = {"as_of": to_micros(top.as_of) if top.as_of else None, "entries": top.entries}
    try:
        cache.top_write(cache.redis_client(), top.leaderboard_id, top.period, top.version, payload)
    except RedisError as exc:
        # The table holds the truth; readers fall back to it and the reconcile refills.
        logger.warning("top-N of board %s not cached: %s", top.leaderboard_id, exc)


def board_repair_request(*, leaderboard: Leaderboard, period: str) -> None:
    """Ask a rank worker to run ``board_repair``; at most once per 10 s per board."""
    try:
        client = cache.redis_client()
        if client.set(redis_keys.repair_asked_key(leaderboard.id, period), "1", nx=True, ex=10):
            celery_app.send_task(
                REPAIR_BOARD_TASK, kwargs={"leaderboard_id": leaderboard.id, "period": period}, ignore_result=True
            )
    except Exception as exc:  # noqa: BLE001 - a read must answer even when Redis or the broker is down
        logger.warning("could not ask for a repair of %s: %s", leaderboard.slug, exc)


def board_repair(*, leaderboard: Leaderboard, period: str) -> None:
    """Recompute the top-N from the database and rebuild the rank index if it is lost."""
    topn_rebuild(leaderboard=leaderboard, period=period)
    if not cache.index_is_ready(cache.redis_client(), leaderboard.id, period):
        index_rebuild(leaderboard=leaderboard, period=period)


def index_rebuild(*, leaderboard: Leaderboard, period: str) -> bool:
    """Load every score row of the board into the rank index, then mark it complete.

    Rows changed meanwhile reach the index through the rank workers with newer versions,
    which the index keeps over the older ones read here.
    """
    client = cache.redis_client()
    token = cache.index_build_start(client, leaderboard.id, period, ttl_seconds=900)
    if token is None:
        return False
    desc = is_desc(leaderboard)
    rows = (
        Score.objects.filter(leaderboard=leaderboard, period=period)
        .values_list("user_id", "score", "reached_at", "version")
        .iterator(chunk_size=_INDEX_BUILD_CHUNK)
    )
    chunk: list[Row] = []
    for user_id, score, reached_at, version in rows:
        chunk.append([user_id, score, to_micros(reached_at), version])
        if len(chunk) >= _INDEX_BUILD_CHUNK:
            cache.index_apply(client, leaderboard.id, period, chunk, desc)
            chunk = []
    cache.index_apply(client, leaderboard.id, period, chunk, desc)
    return cache.index_build_finish(client, leaderboard.id, period, token)


def reconcile_all() -> int:
    """Beat: make every board's top-N and rank index agree with the database."""
    count = 0
    for board in Leaderboard.objects.all():
        try:
            board_repair(leaderboard=board, period=board.current_period())
        except RedisError as exc:
            logger.warning("rank index of %s not checked: %s", board.slug, exc)
        count += 1
    return count


def merge_settings() -> tuple[int, int]:
    return settings.LEADERBOARD_MERGE_LEAF_SIZE, settings.LEADERBOARD_MERGE_FAN_IN
