"""Changing a live board through the API: its name, size and points range (PATCH), and
a manual board's reset (``POST …/reset``).

``top_n`` shapes what the pipeline keeps: each ingest commit cuts its partial to the
board's top-K, and each root cuts the merged list to it. A larger ``top_n`` therefore
needs the top-N read again from the database, and twice: now, and once every process has
dropped its board copy (they trust it for ``LEADERBOARD_BOARD_MEMO_CHECK_SECONDS``), since
a root still cutting at the old size may publish in between. A smaller one is cut at the
next root too, but the same two rebuilds make it exact at once.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from leaderboard_project.celery import app as celery_app
from rankings import cache
from rankings.models import Leaderboard, Reset, TopN
from rankings.period_upkeep import period_open
from rankings.periods import period_at
from rankings.services import REPAIR_BOARD_TASK, topn_rebuild
from scores.services import now_micros

# What a PATCH may change; the ranking fields (order, aggregation, periods) and the slug
# shape stored rows and keys, and are fixed once the board exists.
CHANGEABLE_FIELDS = ("name", "top_n", "min_points", "max_points")


def _open_periods(board: Leaderboard) -> list[str]:
    """Periods whose top-N still moves: the current one and any not closed yet."""
    periods = set(TopN.objects.filter(leaderboard=board, closed=False).values_list("period", flat=True))
    return sorted(periods | {board.current_period()})


def leaderboard_update(*, leaderboard: Leaderboard, changes: dict[str, object]) -> Leaderboard:
    """Apply ``changes`` (a subset of CHANGEABLE_FIELDS, validated) and return the board."""
    with transaction.atomic():
        board = Leaderboard.objects.select_for_update().get(pk=leaderboard.pk)
        resized = "top_n" in changes and changes["top_n"] != board.top_n
        for name, value in changes.items():
            setattr(board, name, value)
        board.save(update_fields=list(changes) or None)  # bumps the boards version on commit
    if resized:
        after_memos = 2 * settings.LEADERBOARD_BOARD_MEMO_CHECK_SECONDS + 1
        for period in _open_periods(board):
            topn_rebuild(leaderboard=board, period=period)
            celery_app.send_task(
                REPAIR_BOARD_TASK,
                kwargs={"leaderboard_id": board.id, "period": period},
                countdown=after_memos,
                ignore_result=True,
            )
    return board


class NotManual(Exception):
    """The board resets on a schedule (or never), not by hand."""


@dataclass(frozen=True)
class BoardReset:
    closed: str
    current: str


def _reset_margin_us() -> int:
    # Every process reads the board's new resets within the memo check interval; the
    # reset takes effect after that, so no process still stamps or applies an event of
    # the new version into the old one. Doubled, plus a little, for a check just missed.
    return int((2 * settings.LEADERBOARD_BOARD_MEMO_CHECK_SECONDS + 0.5) * 1_000_000)


def board_reset(*, leaderboard: Leaderboard) -> BoardReset:
    """Close the current version and start the next, at an instant a moment ahead (the
    answer waits for it): events accepted before it count in the closed version, events
    accepted after it in the new one. The closed version is kept, and readable, like any
    past period; beat's period upkeep stores its final top-N a grace after its end."""
    if leaderboard.reset != Reset.MANUAL:
        raise NotManual(leaderboard.reset)
    with transaction.atomic():
        board = Leaderboard.objects.select_for_update().get(pk=leaderboard.pk)
        resets = list(board.manual_resets)
        at_us = max(now_micros() + _reset_margin_us(), (resets[-1] + 1) if resets else 0)
        closed = period_at(board.period_rule(), at_us - 1).key
        board.manual_resets = [*resets, at_us]
        board.save(update_fields=["manual_resets"])  # bumps the boards version on commit
    current = period_at(board.period_rule(), at_us).key
    # Ready before its first event: an empty top-N and a complete (empty) rank index.
    period_open(leaderboard=board, period=current, client=cache.redis_client())
    wait_s = (at_us - now_micros()) / 1_000_000
    if wait_s > 0:
        time.sleep(wait_s)
    return BoardReset(closed, current)
