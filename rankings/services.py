"""Writes on the ranking side: boards, the merge levels, the top-N and the rank index.

The merge levels across batches: each ingest commit pushes one partial per board (the
top-K of the rows it changed) to the board's level 0 (``ranking_handoff``); once per
merge window the board's root takes what is pending as a round (``round_plan``), merges
it with fan-in F level by level (``spans_merge``, ``rows_merge``; Celery chords when the
round needs more than one level) and publishes it (``round_publish``). See
``rankings.rounds`` for how a round survives a worker killed on the way.

``topn_publish`` is the only writer of a board's top-N besides the repairs from the
database; it re-reads its inputs and repairs when anyone fell (merging alone is exact
only while scores never decrease).
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from leaderboard_project.celery import app as celery_app
from rankings import cache, redis_keys, rounds
from rankings.models import Leaderboard, TopN
from rankings.ordering import rank_key, to_micros, top_k
from rankings.selectors import db_rows_of, db_top_rows, index_head_rows, is_desc, leaderboards_by_id
from scores.models import Score
from tasks.messages import (
    WIRE_VERSION,
    ChangedRow,
    Partial,
    Row,
    partial_decode,
    partial_encode,
    rows_from_json,
    rows_to_json,
)

logger = logging.getLogger(__name__)

REPAIR_BOARD_TASK = "tasks.ranking.repair_board"
RUN_ROOT_TASK = "tasks.ranking.run_root"
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


def ranking_handoff(*, changed: list[ChangedRow]) -> int:
    """After an ingest commit: hand each board's changed rows to ranking.

    In one Redis round trip the rows go into the boards' rank indexes and (merge_tree)
    each board's top-K of them, its partial, onto the board's level 0; boards whose next
    root nobody has scheduled in this merge window get one, a window from now. Returns
    the number of roots scheduled.
    """
    grouped: dict[tuple[int, str], list[Row]] = defaultdict(list)
    for change in changed:
        grouped[(change.leaderboard_id, change.period)].append(change.row)
    boards = leaderboards_by_id({leaderboard_id for leaderboard_id, _ in grouped})
    with_partials = settings.LEADERBOARD_RANKING_STRATEGY == "merge_tree"
    pushes = []
    for (leaderboard_id, period), rows in sorted(grouped.items()):
        board = boards.get(leaderboard_id)
        if board is None:
            continue
        desc = is_desc(board)
        partial = None
        if with_partials:
            cut = top_k(rows, board.top_n, desc)
            partial = partial_encode(Partial(WIRE_VERSION, leaderboard_id, period, cut))
        pushes.append(rounds.BoardPush(leaderboard_id, period, desc, rows, partial))
    if not pushes:
        return 0
    claimed = rounds.boards_push(cache.redis_client(), pushes, settings.LEADERBOARD_MERGE_WINDOW_MS)
    for push in claimed:
        root_schedule(leaderboard_id=push.leaderboard_id, period=push.period)
    return len(claimed)


def root_schedule(*, leaderboard_id: int, period: str) -> None:
    """Run the board's root one merge window from now (the caller claimed the window)."""
    celery_app.send_task(
        RUN_ROOT_TASK,
        kwargs={"leaderboard_id": leaderboard_id, "period": period},
        countdown=settings.LEADERBOARD_MERGE_WINDOW_MS / 1000,
        ignore_result=True,
    )


@dataclass(frozen=True)
class RoundPlan:
    """What a root found to merge: the rounds it took and their spans of partials."""

    tokens: list[str]
    spans: list[rounds.Span]


def round_plan(*, leaderboard: Leaderboard, period: str) -> RoundPlan:
    client = cache.redis_client()
    tokens = rounds.round_claim(client, leaderboard.id, period, settings.LEADERBOARD_ROUND_TAKEOVER_MS)
    spans = rounds.round_spans(client, leaderboard.id, period, tokens, merge_fan_in()) if tokens else []
    return RoundPlan(tokens, spans)


def spans_merge(*, leaderboard: Leaderboard, period: str, spans: list[rounds.Span]) -> list[Row]:
    """Level 1: read up to F partials of level 0 from Redis and merge them."""
    raw = rounds.spans_read(cache.redis_client(), leaderboard.id, period, spans)
    return rows_merge(leaderboard=leaderboard, parts=[partial_decode(item).rows for item in raw])


def rows_merge(*, leaderboard: Leaderboard, parts: list[list[Row]]) -> list[Row]:
    """One merge step: the union of the parts, newest version per user, cut to top-K."""
    return top_k((row for part in parts for row in part), leaderboard.top_n, is_desc(leaderboard))


def round_publish(*, leaderboard: Leaderboard, period: str, candidates: list[Row], tokens: list[str]) -> None:
    """The root's last step: merge the round into the top-N, publish it, then forget the
    round (only now: a root that dies before this leaves the round to be taken over)."""
    if settings.LEADERBOARD_RANKING_STRATEGY == "sorted_set":
        topn_snapshot_from_index(leaderboard=leaderboard, period=period)
    else:
        topn_publish(leaderboard=leaderboard, period=period, candidates=candidates)
    client = cache.redis_client()
    pending = rounds.round_finish(client, leaderboard.id, period, tokens)
    # Pushes that saw this window's flag are pending; if the flag expired with nobody
    # claiming the next window, schedule it here.
    if pending and rounds.root_claim(client, leaderboard.id, period, settings.LEADERBOARD_MERGE_WINDOW_MS):
        root_schedule(leaderboard_id=leaderboard.id, period=period)


def rounds_sweep() -> int:
    """Beat: schedule a root for boards whose partials or rounds were left without one
    (a root lost with its worker, a push whose scheduling publish failed)."""
    client = cache.redis_client()
    scheduled = 0
    for leaderboard_id, period in rounds.boards_with_rounds(client):
        pending, open_rounds = rounds.board_rounds_state(client, leaderboard_id, period)
        if not pending and not open_rounds:
            rounds.board_rounds_forget_if_idle(client, leaderboard_id, period)
            continue
        if rounds.root_claim(client, leaderboard_id, period, settings.LEADERBOARD_MERGE_WINDOW_MS):
            root_schedule(leaderboard_id=leaderboard_id, period=period)
            scheduled += 1
    return scheduled


def merge_fan_in() -> int:
    return max(2, settings.LEADERBOARD_MERGE_FAN_IN)


def _locked_top(board: Leaderboard, period: str) -> TopN:
    top, _ = TopN.objects.select_for_update().get_or_create(leaderboard=board, period=period)
    return top


def _fell(rows: Iterable[Row], fresh: dict[str, Row], desc: bool) -> bool:
    """Whether a row's user now stands worse in the database than in the row (or is gone)."""
    return any(row.user_id not in fresh or rank_key(fresh[row.user_id], desc) > rank_key(row, desc) for row in rows)


def topn_publish(*, leaderboard: Leaderboard, period: str, candidates: list[Row]) -> None:
    """Merge a round's candidates into the board's top-N and publish it.

    The candidates' and members' rows are re-read under the top-N row lock. Merging is
    exact only while nobody falls: when a member of the current top-N or a candidate
    now stands worse than the value it was cut with, someone outside both lists may now
    belong in the top-N, so the list is repaired from the database's ranking index.
    """
    desc = is_desc(leaderboard)
    with transaction.atomic():
        top = _locked_top(leaderboard, period)
        current = rows_from_json(top.entries)
        users = {row.user_id for row in current} | {row.user_id for row in candidates}
        fresh = db_rows_of(leaderboard=leaderboard, period=period, user_ids=sorted(users))
        if _fell(current, fresh, desc) or _fell(candidates, fresh, desc):
            entries = db_top_rows(leaderboard=leaderboard, period=period, limit=leaderboard.top_n)
        else:
            entries = top_k(fresh.values(), leaderboard.top_n, desc)
        if entries != current or top.as_of is None:
            _save_top(top, entries)
    topn_cache_refill(top=top)


def topn_rebuild(*, leaderboard: Leaderboard, period: str) -> TopN:
    """Recompute a board's top-N from the database (reconcile, repair, operators)."""
    with transaction.atomic():
        top = _locked_top(leaderboard, period)
        entries = db_top_rows(leaderboard=leaderboard, period=period, limit=leaderboard.top_n)
        if entries != rows_from_json(top.entries) or top.as_of is None:
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
        if entries != rows_from_json(top.entries) or top.as_of is None:
            _save_top(top, entries)
    topn_cache_refill(top=top)


def _save_top(top: TopN, entries: list[Row]) -> None:
    top.entries = rows_to_json(entries)
    top.version += 1
    top.as_of = timezone.now()
    top.save(update_fields=["entries", "version", "as_of"])


def topn_cache_refill(*, top: TopN) -> None:
    # Stored rendered (cache.top_write): the read path serves the bytes as they are.
    rows = rows_from_json(top.entries)
    as_of_us = to_micros(top.as_of) if top.as_of else 0
    try:
        cache.top_write(cache.redis_client(), top.leaderboard_id, top.period, top.version, as_of_us, rows)
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
        chunk.append(Row(user_id, score, to_micros(reached_at), version))
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
