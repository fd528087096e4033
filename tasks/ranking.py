"""Ranking tasks: the board roots of the merge levels, their merges, repairs.

``run_root`` runs once per merge window per board (see ``rankings.rounds``). It claims
the partials pushed since the last root. Up to F of them it merges itself (one level);
more become a tree known at that moment: level-1 tasks read F partials each from Redis,
Celery chords of at most F members merge the results level by level, and
``finish_round`` publishes. A round of n partials has ceil(log_F(n)) levels, at most ten.
"""

import dataclasses
import logging
import math

from celery import chord, shared_task
from celery.canvas import Signature
from django.conf import settings
from msgspec import to_builtins

from leaderboard_project import metrics
from rankings.models import Leaderboard
from rankings.rounds import Span
from rankings.selectors import leaderboards_by_id
from rankings.services import (
    board_repair,
    board_repair_request,
    index_build_chunk,
    merge_fan_in,
    round_plan,
    round_publish,
    rows_merge,
    span_merge,
)
from tasks.errors import TRANSIENT_ERRORS
from tasks.messages import Merged, merged_from_json

logger = logging.getLogger(__name__)

# Ranking state is derived: after 20 tries the reconcile schedule repairs what is left.
_RETRYING = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 1,  # seconds, doubled each try (Celery rounds factors below 1 up)
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 20,
}


def _board(leaderboard_id: int) -> Leaderboard | None:
    return leaderboards_by_id({leaderboard_id}).get(leaderboard_id)


@shared_task(name="tasks.ranking.run_root", **_RETRYING)
def run_root(leaderboard_id: int, period: str) -> int:
    """A board's root: merge the partials pushed since the last root into its top-N."""
    board = _board(leaderboard_id)
    if board is None:
        return 0
    plan = round_plan(leaderboard=board, period=period)
    partials = sum(span.stop - span.start + 1 for span in plan.spans)
    if len(plan.spans) <= 1:
        candidates = span_merge(leaderboard=board, period=period, spans=plan.spans, number=0)
        levels = 1 if partials > 1 else 0
        _publish(board, period, candidates, plan.tokens, 1, partials, levels)
        return levels
    canvas, levels = merge_tree(board, period, plan.spans, plan.tokens, partials)
    canvas.apply_async()
    return levels


@shared_task(name="tasks.ranking.merge_span", ignore_result=False, **_RETRYING)
def merge_span(leaderboard_id: int, period: str, span: list, number: int) -> list:
    """Level 1: merge up to F partials of level 0, read from the round's Redis list."""
    board = _board(leaderboard_id)
    if board is None:
        return []
    return to_builtins(span_merge(leaderboard=board, period=period, spans=[Span(*span)], number=number))


@shared_task(name="tasks.ranking.merge_rows", ignore_result=False, **_RETRYING)
def merge_rows(parts: list[list], leaderboard_id: int) -> list:
    """Levels 2 and up: merge the results of up to F merges below."""
    board = _board(leaderboard_id)
    if board is None:
        return []
    return to_builtins(rows_merge(leaderboard=board, parts=[merged_from_json(part) for part in parts]))


@shared_task(name="tasks.ranking.finish_round", **_RETRYING)
def finish_round(
    merged: list, leaderboard_id: int, period: str, tokens: list[str], spans: int, partials: int, levels: int
) -> None:
    board = _board(leaderboard_id)
    if board is not None:
        _publish(board, period, merged_from_json(merged), tokens, spans, partials, levels)


def _publish(
    board: Leaderboard, period: str, candidates: Merged, tokens: list[str], spans: int, partials: int, levels: int
) -> None:
    """Publish a round. It writes derived state: a failure that is not an outage is
    repaired from the database instead of dead-lettered."""
    try:
        round_publish(leaderboard=board, period=period, candidates=candidates, tokens=tokens, spans=spans)
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        logger.exception("merge root of %s failed; repairing it from the database", board.slug)
        board_repair_request(leaderboard=board, period=period)
    metrics.root_run(board.slug, levels)
    # One line per root, read by the tests and the benchmark.
    logger.info("merge root: board=%s partials=%d levels=%d rounds=%d", board.id, partials, levels, len(tokens))


def fan_in_for(leaves: int) -> int:
    """The configured fan-in, raised when needed so the tree stays within ten levels."""
    fan_in = merge_fan_in()
    while leaves > 1 and math.ceil(math.log(leaves, fan_in)) > settings.LEADERBOARD_MERGE_MAX_LEVELS:
        fan_in += 1
    return fan_in


def merge_tree(
    board: Leaderboard, period: str, spans: list[Span], tokens: list[str], partials: int
) -> tuple[Signature, int]:
    """The canvas merging these spans (level 1) in chords up to one partial, and its levels."""
    nodes: list[Signature] = [
        merge_span.si(board.id, period, list(dataclasses.astuple(span)), number) for number, span in enumerate(spans)
    ]
    fan_in = fan_in_for(len(nodes))
    levels = 1
    while len(nodes) > 1:
        nodes = [
            chord(nodes[i : i + fan_in], merge_rows.s(board.id)) if len(nodes[i : i + fan_in]) > 1 else nodes[i]
            for i in range(0, len(nodes), fan_in)
        ]
        levels += 1
    finish = finish_round.s(board.id, period, tokens, len(spans), partials, levels)
    return nodes[0] | finish, levels


@shared_task(name="tasks.ranking.repair_board", **_RETRYING)
def repair_board(leaderboard_id: int, period: str) -> None:
    board = Leaderboard.objects.filter(id=leaderboard_id).first()
    if board is not None:
        board_repair(leaderboard=board, period=period)


@shared_task(name="tasks.ranking.index_build_chunk", **_RETRYING)
def index_build_chunk_task(leaderboard_id: int, period: str, token: str) -> str:
    """One chunk of a rank-index rebuild; it sends the next chunk itself."""
    board = Leaderboard.objects.filter(id=leaderboard_id).first()
    if board is None:
        return "gone"
    return index_build_chunk(leaderboard=board, period=period, token=token)
