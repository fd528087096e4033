"""Writes on the ranking side: boards, the merge levels, the top-N and the rank index.

The merge levels across batches: each ingest commit pushes one partial per board (the
top-K of the rows it changed) to the board's level 0 (``ranking_handoff``); once per
merge window the board's root takes what is pending as a round (``round_plan``), merges
it with fan-in F level by level (``span_merge``, ``rows_merge``; Celery chords when the
round needs more than one level) and publishes it (``round_publish``). See
``rankings.rounds`` for how a round survives a worker killed on the way.

``topn_publish`` is the only writer of a board's top-N besides the repairs from the
database; it re-reads its inputs and repairs when anyone fell (merging alone is exact
only while scores never decrease).
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

import msgspec
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from leaderboard_project import metrics
from leaderboard_project.celery import app as celery_app
from rankings import cache, index_upkeep, redis_keys, rounds
from rankings.models import Leaderboard, TopN
from rankings.ordering import merge_top_k, rank_key, to_micros, top_k
from rankings.selectors import db_rows_of, db_top_rows, index_head_rows, is_desc, leaderboards_by_id
from tasks.messages import (
    WIRE_VERSION,
    ChangedRow,
    Merged,
    Partial,
    ProfileCopy,
    Row,
    partial_decode,
    partial_encode,
    rows_from_json,
    rows_to_json,
)
from tasks.queues import QueueRole, role_queue_name

logger = logging.getLogger(__name__)

REPAIR_BOARD_TASK = "tasks.ranking.repair_board"
RUN_ROOT_TASK = "tasks.ranking.run_root"
RECONCILE_BOARD_TASK = "tasks.maintenance.reconcile_board"


def leaderboard_create(**fields: object) -> Leaderboard:
    board = Leaderboard.objects.create(**fields)
    TopN.objects.create(leaderboard=board, period=board.current_period())
    try:
        # A new board has no users, so its (empty) rank index is complete.
        cache.index_mark_ready(cache.redis_client(), board.id, board.current_period())
    except RedisError:
        logger.warning("Redis down at creation of %s; its rank index is rebuilt on first read", board.slug)
    return board


def ranking_handoff(
    *,
    changed: list[ChangedRow],
    oldest_accepted_us: int,
    also: Callable[[Pipeline], None] | None = None,
    redelivered: bool = False,
) -> int:
    """After an ingest commit: hand each board's changed rows to ranking.

    In one Redis round trip the rows go into the boards' rank indexes and (merge_tree)
    each board's top-K of them, its partial, onto the board's level 0; a board with no root
    pending gets one, a window from now (``rankings.rounds``). ``also``
    adds the caller's commands to that round trip (sent even when no row changed). A
    ``redelivered`` batch's worker may have died between claiming its boards' roots and
    scheduling them: it schedules them whoever holds the claim.
    Returns the number of roots scheduled.
    """
    grouped: dict[tuple[int, str], list[Row]] = defaultdict(list)
    profiles: dict[tuple[int, str], list[tuple[str, ProfileCopy]]] = defaultdict(list)
    for change in changed:
        grouped[(change.leaderboard_id, change.period)].append(change.row)
        if change.profile is not None:
            profiles[(change.leaderboard_id, change.period)].append((change.row.user_id, change.profile))
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
            partial = partial_encode(Partial(WIRE_VERSION, leaderboard_id, period, cut, oldest_accepted_us))
        pushes.append(rounds.BoardPush(leaderboard_id, period, desc, rows, partial, profiles[(leaderboard_id, period)]))
    if not pushes:
        if also is not None:
            with cache.redis_client().pipeline(transaction=False) as pipe:
                also(pipe)
                pipe.execute()
        return 0
    client = cache.redis_client()
    claimed = rounds.boards_push(client, pushes, settings.LEADERBOARD_ROOT_CLAIM_TTL_MS, also, claim_anyway=redelivered)
    for push in claimed:
        root_schedule_claimed(client, leaderboard_id=push.leaderboard_id, period=push.period)
    return len(claimed)


def root_schedule_claimed(client: Redis, *, leaderboard_id: int, period: str) -> None:
    """Schedule the root the caller claimed; if the publish fails, let go of the claim
    (else the board would wait out its TTL for a root that was never sent)."""
    try:
        root_schedule(leaderboard_id=leaderboard_id, period=period)
    except Exception:
        with suppress(RedisError):  # Redis away too: the claim's TTL lets go of it
            rounds.root_claim_release(client, leaderboard_id, period)
        raise


def root_schedule(*, leaderboard_id: int, period: str) -> None:
    """Run the board's root one merge window from now (the caller claimed the window):
    the message waits in the delay queue until its TTL sends it to the rank queue."""
    celery_app.send_task(
        RUN_ROOT_TASK,
        kwargs={"leaderboard_id": leaderboard_id, "period": period},
        queue=role_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, QueueRole.ROOT_DELAY),
        # An AMQP per-message TTL, in seconds as kombu takes it (not Celery's "expires",
        # which would revoke the task when it arrives).
        expiration=settings.LEADERBOARD_MERGE_WINDOW_MS / 1000,
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


def _partial_read(client: Redis, leaderboard: Leaderboard, period: str, raw: bytes) -> Partial | None:
    """The partial, or None when no root can read it (another wire version in a rolling
    upgrade, a bug): it is set aside and counted, never retried, so one bad partial
    cannot fail every root of the board; the caller repairs the board instead."""
    try:
        partial = partial_decode(raw)
        if (partial.version, partial.leaderboard_id, partial.period) != (WIRE_VERSION, leaderboard.id, period):
            raise ValueError(f"a partial of version {partial.version} for {partial.leaderboard_id}/{partial.period}")
    except (msgspec.DecodeError, ValueError) as exc:
        logger.error("setting aside a partial of %s/%s that cannot be merged: %s", leaderboard.slug, period, exc)
        cache.partial_set_aside(client, leaderboard.id, period, raw)
        metrics.partial_set_aside(leaderboard.slug)
        return None
    return partial


def span_merge(*, leaderboard: Leaderboard, period: str, spans: list[rounds.Span], number: int) -> Merged:
    """Level 1: read the (up to F) partials of level 0 in a round's span and merge them;
    ``number`` names the span (or the set of spans, when a root merges them inline).
    A partial set aside counts as a fall: what it carried is read from the database."""
    client = cache.redis_client()
    raw = rounds.spans_read(client, leaderboard.id, period, spans)
    partials = [partial for item in raw if (partial := _partial_read(client, leaderboard, period, item))]
    parts = [Merged(p.rows, False, p.oldest_accepted_us, []) for p in partials]
    merged = rows_merge(leaderboard=leaderboard, parts=parts)
    fell = merged.fell or len(partials) < len(raw)
    return Merged(merged.rows, fell, merged.oldest_accepted_us, [number])


def rows_merge(*, leaderboard: Leaderboard, parts: list[Merged]) -> Merged:
    """One merge step: the union of the parts, newest version per user, cut to top-K.
    Deterministic, so a re-run step gives the same result."""
    rows, fell = merge_top_k((row for part in parts for row in part.rows), leaderboard.top_n, is_desc(leaderboard))
    oldest = min((part.oldest_accepted_us for part in parts if part.oldest_accepted_us), default=0)
    covered = sorted({number for part in parts for number in part.covered})
    return Merged(rows, fell or any(part.fell for part in parts), oldest, covered)


def round_publish(*, leaderboard: Leaderboard, period: str, candidates: Merged, tokens: list[str], spans: int) -> None:
    """The root's last step: merge the round into the top-N, publish it, then forget the
    round (only now: a root that dies before this leaves the round to be taken over).
    ``spans`` is how many spans the round had: a result that does not cover them all
    (a chord that fired short) is published, and its round left to be taken over."""
    if settings.LEADERBOARD_RANKING_STRATEGY == "sorted_set":
        topn_snapshot_from_index(leaderboard=leaderboard, period=period)
    else:
        topn_publish(leaderboard=leaderboard, period=period, candidates=candidates)
    if candidates.oldest_accepted_us:
        metrics.freshness_observe((time.time_ns() // 1000 - candidates.oldest_accepted_us) / 1e6)
    client = cache.redis_client()
    if candidates.covered != list(range(spans)):
        logger.warning(
            "round of %s covers spans %s of %d: left for a takeover", leaderboard.slug, candidates.covered, spans
        )
        return
    pending = rounds.round_finish(client, leaderboard.id, period, tokens)
    # Partials pushed while this root ran: unless one of their pushes claimed the next
    # root already, claim and schedule it here.
    if pending and rounds.root_claim(client, leaderboard.id, period, settings.LEADERBOARD_ROOT_CLAIM_TTL_MS):
        root_schedule_claimed(client, leaderboard_id=leaderboard.id, period=period)


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
        if rounds.root_claim(client, leaderboard_id, period, settings.LEADERBOARD_ROOT_CLAIM_TTL_MS):
            root_schedule_claimed(client, leaderboard_id=leaderboard_id, period=period)
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


def topn_publish(*, leaderboard: Leaderboard, period: str, candidates: Merged) -> None:
    """Merge a round's candidates into the board's top-N and publish it.

    The candidates' and members' rows are re-read under the top-N row lock. Merging is
    exact only while nobody falls: when a member of the current top-N or a candidate
    now stands worse than the value it was cut with (or fell between two partials of the
    round), someone outside both lists may now belong in the top-N, so the list is
    repaired from the database's ranking index.
    """
    desc = is_desc(leaderboard)
    with transaction.atomic():
        top = _locked_top(leaderboard, period)
        current = rows_from_json(top.entries)
        users = {row.user_id for row in current} | {row.user_id for row in candidates.rows}
        fresh = db_rows_of(leaderboard=leaderboard, period=period, user_ids=sorted(users))
        if candidates.fell or _fell(current, fresh, desc) or _fell(candidates.rows, fresh, desc):
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
            if top.as_of is not None:
                metrics.reconcile_repaired(leaderboard.slug)
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
    """Recompute the top-N from the database; rebuild the rank index if it is lost, and
    resume a rebuild whose worker died."""
    topn_rebuild(leaderboard=leaderboard, period=period)
    client = cache.redis_client()
    dead_build = cache.index_build_state(client, leaderboard.id, period) is not None and not cache.index_build_active(
        client, leaderboard.id, period
    )
    if dead_build or not cache.index_is_ready(client, leaderboard.id, period):
        index_rebuild_start(leaderboard=leaderboard, period=period)


def index_rebuild_start(*, leaderboard: Leaderboard, period: str, chunk_rows: int | None = None) -> bool:
    """Start (or resume) the chunked rebuild of the board's rank index on the rank
    workers, one task per chunk; False when a live rebuild already holds it."""
    token = index_upkeep.index_build_claim(leaderboard=leaderboard, period=period, chunk_rows=chunk_rows)
    if token is None:
        return False
    index_build_chunk_send(leaderboard_id=leaderboard.id, period=period, token=token)
    return True


def index_build_chunk_send(*, leaderboard_id: int, period: str, token: str) -> None:
    celery_app.send_task(
        index_upkeep.BUILD_CHUNK_TASK,
        kwargs={"leaderboard_id": leaderboard_id, "period": period, "token": token},
        ignore_result=True,
    )


def index_build_chunk(*, leaderboard: Leaderboard, period: str, token: str) -> str:
    """One chunk of a rebuild (a rank task); sends the next one while rows remain. The
    time budget is a third of the soft limit, so a slow database ends the chunk early
    instead of the task being killed."""
    budget = settings.CELERY_TASK_SOFT_TIME_LIMIT / 3
    outcome = index_upkeep.index_build_run(leaderboard=leaderboard, period=period, token=token, budget_seconds=budget)
    if outcome == "more":
        index_build_chunk_send(leaderboard_id=leaderboard.id, period=period, token=token)
    return outcome


def index_rebuild(*, leaderboard: Leaderboard, period: str, on_chunk: Callable[[int, int], None] | None = None) -> bool:
    """Rebuild the board's rank index here, chunk after chunk (commands, reseed, bench);
    ``on_chunk(done, total)`` follows the progress. False when a live rebuild holds it.

    Rows changed meanwhile reach the index (and the rebuild's shadow) through the rank
    workers with newer versions, which are kept over the older ones read here.
    """
    token = index_upkeep.index_build_claim(leaderboard=leaderboard, period=period)
    if token is None:
        return False
    client = cache.redis_client()
    while True:
        outcome = index_upkeep.index_build_run(
            leaderboard=leaderboard, period=period, token=token, budget_seconds=float("inf")
        )
        progress = index_upkeep.index_build_progress(client, leaderboard.id, period)
        if on_chunk is not None:
            last = cache.index_build_last(client, leaderboard.id, period) or {}
            done = progress.done if progress else int(last.get("rows", 0))
            on_chunk(done, progress.total if progress else done)
        if outcome != "more":
            return outcome == "done"


@dataclass(frozen=True)
class BoardCheck:
    """What one board's reconcile found: users the slice check repaired, and whether
    the counters agreed (None: a first disagreement, looked at again next time)."""

    repaired: int
    counters_agree: bool | None
    rebuilding: bool


def board_reconcile(*, leaderboard: Leaderboard, period: str) -> BoardCheck:
    """Make one board's top-N and rank index agree with the database (the fan-out's task).

    A lost index, or a rebuild whose worker died, is (re)started; a complete one gets
    the next slice verified and its counters compared, and is rebuilt when they stay apart.
    """
    topn_rebuild(leaderboard=leaderboard, period=period)
    client = cache.redis_client()
    reconcile_mark_board(client, leaderboard.id, period)
    if cache.index_build_state(client, leaderboard.id, period) is not None:
        # The rebuild replaces the index; only a dead one needs a hand.
        if not cache.index_build_active(client, leaderboard.id, period):
            index_rebuild_start(leaderboard=leaderboard, period=period)
        return BoardCheck(0, None, True)
    if not cache.index_is_ready(client, leaderboard.id, period):
        return BoardCheck(0, None, index_rebuild_start(leaderboard=leaderboard, period=period))
    repaired = index_upkeep.index_verify_slice(leaderboard=leaderboard, period=period)
    agree = index_upkeep.index_counters_agree(leaderboard=leaderboard, period=period)
    rebuilding = agree is False and index_rebuild_start(leaderboard=leaderboard, period=period)
    if repaired or rebuilding:
        metrics.reconcile_repaired(leaderboard.slug)
    return BoardCheck(repaired, agree, rebuilding)


def reconcile_mark_board(client: Redis, leaderboard_id: int, period: str) -> None:
    client.zadd(redis_keys.reconciled_key(), {f"{leaderboard_id}|{period}": time.time()})


def reconcile_fanout() -> int:
    """Beat: one reconcile task per board whose rank index was written since its last
    check, plus the next few boards of a slow sweep over every board (which catches an
    index that went stale without a write, e.g. Redis restarted and lost its last
    second). Returns the number of tasks sent."""
    client = cache.redis_client()
    boards = set(cache.boards_touched_take(client, settings.LEADERBOARD_RECONCILE_MAX_BOARDS))
    boards |= _sweep_next(client, settings.LEADERBOARD_RECONCILE_SWEEP_BOARDS)
    for leaderboard_id, period in sorted(boards):
        celery_app.send_task(
            RECONCILE_BOARD_TASK,
            kwargs={"leaderboard_id": leaderboard_id, "period": period},
            ignore_result=True,
            expires=settings.LEADERBOARD_RECONCILE_TASK_EXPIRES,
        )
    return len(boards)


def _sweep_next(client: Redis, count: int) -> set[tuple[int, str]]:
    """The next ``count`` live boards by id after the stored cursor, wrapping around."""
    if count <= 0:
        return set()
    after = int(client.get(redis_keys.reconcile_sweep_cursor_key()) or 0)
    boards = list(Leaderboard.objects.filter(id__gt=after, deleting=False).order_by("id")[:count])
    client.set(redis_keys.reconcile_sweep_cursor_key(), boards[-1].id if len(boards) == count else 0)
    return {(board.id, board.current_period()) for board in boards}


def reconcile_all() -> int:
    """Reconcile every board here, one after the other (operators; beat uses the fan-out)."""
    count = 0
    for board in Leaderboard.objects.filter(deleting=False):
        try:
            board_reconcile(leaderboard=board, period=board.current_period())
        except RedisError as exc:
            logger.warning("rank index of %s not checked: %s", board.slug, exc)
        count += 1
    return count
