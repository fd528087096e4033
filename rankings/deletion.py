"""Deleting a board without stopping the service: hide it at once, then remove its rows
in chunks and its Redis keys in a maintenance task (``tasks.cleanup``).

A board may hold millions of score rows and event ids. Deleting them in one statement
(or letting Django's collector load them for the admin's confirmation page) would hold
locks and memory for minutes; chunks keep every statement short.
"""

import logging
import time

from django.db import connection, transaction
from redis import Redis

from leaderboard_project.celery import app as celery_app
from rankings import cache
from rankings import redis_keys as keys
from rankings.models import Leaderboard

logger = logging.getLogger(__name__)

DELETE_BOARD_TASK = "tasks.cleanup.delete_board"
# Slugs of boards being deleted start with "~", which no live slug may (slug_validator).
DELETING_SLUG_MARK = "~"


def board_deletion_start(*, leaderboard: Leaderboard) -> None:
    """Hide the board from the API and ingest now, free its slug, queue the clean-up."""
    with transaction.atomic():
        board = Leaderboard.objects.select_for_update().get(pk=leaderboard.pk)
        if not board.deleting:
            board.deleting = True
            board.slug = f"{DELETING_SLUG_MARK}{board.pk}{DELETING_SLUG_MARK}{board.slug}"[:64]
            board.save(update_fields=["deleting", "slug"])  # bumps the boards version on commit
        transaction.on_commit(lambda: celery_app.send_task(DELETE_BOARD_TASK, args=[board.pk], ignore_result=True))


def _delete_users_chunk(table: str, leaderboard_id: int, chunk: int) -> int:
    """Delete the rows of up to ``chunk`` users of the board from ``table``; rows deleted."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Two statements, each single-table, as Citus runs them on every shard alike.
        cursor.execute(
            f"SELECT DISTINCT user_id FROM {table} WHERE leaderboard_id = %s LIMIT %s", [leaderboard_id, chunk]
        )
        users = [row[0] for row in cursor.fetchall()]
        if not users:
            return 0
        cursor.execute(f"DELETE FROM {table} WHERE leaderboard_id = %s AND user_id = ANY(%s)", [leaderboard_id, users])
        return cursor.rowcount


def board_redis_keys_delete(client: Redis, leaderboard_id: int) -> int:
    """Every key of the board, whatever its period (keys start with the hash tag {id})."""
    return cache.keys_delete_matching(client, keys.board_prefix(leaderboard_id) + "*")


def board_delete_step(*, leaderboard_id: int, chunk: int, budget_seconds: float) -> bool:
    """Remove the board's rows chunk by chunk for up to ``budget_seconds``; True once the
    board, its rows and its Redis keys are all gone (safe to call again: idempotent)."""
    board = Leaderboard.objects.filter(pk=leaderboard_id).first()
    if board is None:
        board_redis_keys_delete(cache.redis_client(), leaderboard_id)
        return True
    if not board.deleting:
        logger.warning("board %s is not marked for deletion; left as it is", board.slug)
        return True
    deadline = time.monotonic() + budget_seconds
    for table in ("scores_score", "scores_processedevent"):
        while _delete_users_chunk(table, leaderboard_id, chunk):
            if time.monotonic() > deadline:
                return False
    # Now small: the top-N row and the board's keys go with the board row.
    board.delete()
    # Last, so that no rank task still holding the board (a memo up to a second old)
    # leaves a key behind a clean-up that already ran.
    board_redis_keys_delete(cache.redis_client(), leaderboard_id)
    return True
