"""Ranking tasks: the merge levels (Celery chords) and the rank index.

``ranking_dispatch`` cuts an ingest batch's changed rows into leaves and builds the
tree: each leaf feeds the rank index and reduces its rows to a top-K per board; chords of
at most ``fan_in`` members merge them level by level (at most ten levels) until one
top-K per board reaches ``publish_top``, the root.
"""

import logging
import math

from celery import chord, shared_task
from celery.canvas import Signature
from django.conf import settings

from rankings.models import Leaderboard
from rankings.selectors import leaderboards_by_id
from rankings.services import (
    Partial,
    board_repair,
    board_repair_request,
    partial_from_rows,
    partials_merge,
    split_board_key,
    topn_publish,
    topn_snapshot_from_index,
)
from tasks.errors import TRANSIENT_ERRORS

logger = logging.getLogger(__name__)

# Ranking state is derived: after 20 tries the reconcile schedule repairs what is left.
_RETRYING = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,  # seconds, doubled each try (Celery rounds factors below 1 up)
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 20,
}


@shared_task(name="tasks.ranking.reduce_leaf", ignore_result=False, **_RETRYING)
def reduce_leaf(changed: list[list]) -> Partial:
    return partial_from_rows(changed=changed)


@shared_task(name="tasks.ranking.merge_partials", ignore_result=False, **_RETRYING)
def merge_partials(partials: list[Partial]) -> Partial:
    return partials_merge(partials=partials)


@shared_task(name="tasks.ranking.publish_top", **_RETRYING)
def publish_top(partial: Partial, levels: int = 0) -> int:
    """The root of a tree. It writes derived state: a failure that is not an outage is
    repaired from the database instead of dead-lettered."""
    try:
        topn_publish(partial=partial)
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        logger.exception("merge root failed; repairing %s from the database", sorted(partial))
        _repair(partial)
    # One line per root, read by the end-to-end test and the benchmark.
    logger.info("merge roots: trees=1 levels=%d", levels)
    return levels


@shared_task(name="tasks.ranking.snapshot_top", **_RETRYING)
def snapshot_top(board_keys: list[str]) -> None:
    """sorted_set strategy: the index is the top-N; copy its head into the admin table."""
    try:
        for leaderboard_id, period in map(split_board_key, board_keys):
            board = leaderboards_by_id({leaderboard_id}).get(leaderboard_id)
            if board is not None:
                topn_snapshot_from_index(leaderboard=board, period=period)
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        logger.exception("top-N snapshot failed; repairing %s from the database", board_keys)
        _repair(dict.fromkeys(board_keys))


def _repair(board_keys: dict) -> None:
    boards = leaderboards_by_id({split_board_key(key)[0] for key in board_keys})
    for key in board_keys:
        leaderboard_id, period = split_board_key(key)
        if leaderboard_id in boards:
            board_repair_request(leaderboard=boards[leaderboard_id], period=period)


@shared_task(name="tasks.ranking.repair_board", **_RETRYING)
def repair_board(leaderboard_id: int, period: str) -> None:
    board = Leaderboard.objects.filter(id=leaderboard_id).first()
    if board is not None:
        board_repair(leaderboard=board, period=period)


def fan_in_for(leaves: int) -> int:
    """The configured fan-in, raised when needed so the tree stays within ten levels."""
    fan_in = max(2, settings.LEADERBOARD_MERGE_FAN_IN)
    while leaves > 1 and math.ceil(math.log(leaves, fan_in)) > settings.LEADERBOARD_MERGE_MAX_LEVELS:
        fan_in += 1
    return fan_in


def merge_tree(leaves: list[list[list]]) -> tuple[Signature, int]:
    """The canvas for these leaves and how many chord levels it has."""
    nodes: list[Signature] = [reduce_leaf.si(leaf) for leaf in leaves]
    fan_in = fan_in_for(len(nodes))
    levels = 0
    while len(nodes) > 1:
        nodes = [
            chord(nodes[i : i + fan_in], merge_partials.s()) if len(nodes[i : i + fan_in]) > 1 else nodes[i]
            for i in range(0, len(nodes), fan_in)
        ]
        levels += 1
    return nodes[0] | publish_top.s(levels=levels), levels


def ranking_dispatch(changed: list[list]) -> None:
    """Hand an ingest batch's changed rows to ranking.

    A batch that fits one leaf is reduced right here (no task to hop through): its rows
    go into the rank index and its top-K straight to the root. Larger ones become trees.
    """
    if not changed:
        return
    size = settings.LEADERBOARD_MERGE_LEAF_SIZE
    if settings.LEADERBOARD_RANKING_STRATEGY == "sorted_set":
        partial = partial_from_rows(changed=changed)
        snapshot_top.apply_async(args=[sorted(partial)])
        return
    if len(changed) <= size:
        publish_top.apply_async(args=[partial_from_rows(changed=changed)], kwargs={"levels": 0})
        return
    canvas, _ = merge_tree([changed[i : i + size] for i in range(0, len(changed), size)])
    canvas.apply_async()
