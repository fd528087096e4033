"""Deleting a board without stopping the service: hide it at once, then remove its rows
in chunks and its Redis keys in a maintenance task (``tasks.cleanup``).

A board may hold millions of score rows and event ids. Deleting them in one statement
(or letting Django's collector load them for the admin's confirmation page) would hold
locks and memory for minutes; chunks keep every statement short.
"""

import logging
import time

from django.conf import settings
from django.db import connection, transaction
from redis import Redis
from redis.exceptions import RedisError

from leaderboard_project.celery import app as celery_app
from rankings import cache
from rankings import redis_keys as keys
from rankings.models import Leaderboard
from tasks.errors import TRANSIENT_ERRORS

logger = logging.getLogger(__name__)

DELETE_BOARD_TASK = "tasks.cleanup.delete_board"
# Slugs of boards being deleted start with "~", which no live slug may (slug_validator).
DELETING_SLUG_MARK = "~"
# Each deletion step marks its board alive for this long; a board marked for deletion with
# no live mark has lost its task (a broker down at the request, a lost message).
_ALIVE_SECONDS = 120


def _alive_key(leaderboard_id: int) -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:deleting-alive:{leaderboard_id}"


def _delete_task_send(leaderboard_id: int) -> None:
    try:
        celery_app.send_task(DELETE_BOARD_TASK, args=[leaderboard_id], ignore_result=True)
    except TRANSIENT_ERRORS as exc:
        # The board is marked (gone for readers and ingest): the beat sends it again.
        logger.warning(
            "board %s marked for deletion, its task not sent (%s): resent within a minute", leaderboard_id, exc
        )


def board_deletion_start(*, leaderboard: Leaderboard) -> None:
    """Hide the board from the API and ingest now, free its slug, queue the clean-up."""
    with transaction.atomic():
        board = Leaderboard.objects.select_for_update().get(pk=leaderboard.pk)
        if not board.deleting:
            board.deleting = True
            board.slug = f"{DELETING_SLUG_MARK}{board.pk}{DELETING_SLUG_MARK}{board.slug}"[:64]
            board.save(update_fields=["deleting", "slug"])  # bumps the boards version on commit
        transaction.on_commit(lambda: _delete_task_send(board.pk))


def board_deletions_resume() -> int:
    """Send the clean-up again for boards marked for deletion whose task no step has run
    for a while (beat, "resume board deletions"); returns how many were sent."""
    client = cache.redis_client()
    sent = 0
    for leaderboard_id in Leaderboard.objects.filter(deleting=True).values_list("id", flat=True):
        if client.set(_alive_key(leaderboard_id), "resumed", nx=True, ex=_ALIVE_SECONDS):
            _delete_task_send(leaderboard_id)
            sent += 1
    return sent


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
    try:
        cache.redis_client().set(_alive_key(leaderboard_id), "step", ex=_ALIVE_SECONDS)
    except RedisError as exc:  # the beat may send a second task meanwhile: steps are idempotent
        logger.warning("board %s deletion not marked alive: %s", leaderboard_id, exc)
    deadline = time.monotonic() + budget_seconds
    for table in ("scores_score", "scores_processedevent", "scores_entryprofile"):
        while _delete_users_chunk(table, leaderboard_id, chunk):
            if time.monotonic() > deadline:
                return False
    # Now small: the top-N row and the board's keys go with the board row.
    board.delete()
    # Last, so that no rank task still holding the board (a memo up to a second old)
    # leaves a key behind a clean-up that already ran.
    board_redis_keys_delete(cache.redis_client(), leaderboard_id)
    return True
