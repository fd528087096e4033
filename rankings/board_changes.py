"""Changing a live board through the API: its name, size and points range (PATCH).

``top_n`` shapes what the pipeline keeps: each ingest commit cuts its partial to the
board's top-K, and each root cuts the merged list to it. A larger ``top_n`` therefore
needs the top-N read again from the database, and twice: now, and once every process has
dropped its board copy (they trust it for ``LEADERBOARD_BOARD_MEMO_CHECK_SECONDS``), since
a root still cutting at the old size may publish in between. A smaller one is cut at the
next root too, but the same two rebuilds make it exact at once.
"""

from django.conf import settings
from django.db import transaction

from leaderboard_project.celery import app as celery_app
from rankings.models import Leaderboard, TopN
from rankings.services import REPAIR_BOARD_TASK, topn_rebuild

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
