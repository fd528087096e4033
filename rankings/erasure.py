"""Erasing a user on every board and period: scores, event ids, rank index entries, top-N.

``DELETE /api/v1/users/{id}`` writes a tombstone (``ErasedUser``) stamped with the
accepted-time clock (``erased_us``), answers 202 and sends ``tasks.maintenance.erase_user``
to the maintenance queue. From the tombstone's commit on, ingest drops the user's events
accepted at or before ``erased_us`` (``scores.tombstones``), however late they are applied.
The task then:

1. waits until no database transaction that started before it (so before the tombstone
   committed) is still running (``pg_stat_activity.xact_start``): such an ingest
   transaction did not see the tombstone and could re-create a row after the delete.
   The wait is bounded; past it the task is sent again later with the same cutoff;
2. in one transaction (one shard on Citus: the tables are colocated by user) deletes the
   user's score rows (RETURNING board, period), event ids and hidden-user rows (with the
   board's current period), and records those (board, period) in the tombstone
   (``pending``), so a retry after a Redis failure still knows them;
3. takes the user out of each of those periods' rank index and recomputes its top-N
   (``cache.index_remove_user``, as hiding does; the script also puts the user in the
   board's hidden set, so a hand-off of an older transaction that reaches Redis after the
   removal is skipped);
4. a grace period later (``LEADERBOARD_ERASE_GRACE_SECONDS``) takes the user out of those
   hidden sets again and marks the tombstone finished. Events accepted after the erasure
   then count again (the user came back); until then ingest holds them back.

Tombstones older than the event-id retention window are purged with the event ids
(``scores.maintenance``): an event accepted before the erasure is not expected to arrive
later than that.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from leaderboard_project.celery import app as celery_app
from rankings import cache
from rankings.models import HiddenUser
from rankings.selectors import leaderboards_by_id
from rankings.services import topn_rebuild
from scores.models import ErasedUser
from scores.services import now_micros

logger = logging.getLogger(__name__)

ERASE_USER_TASK = "tasks.maintenance.erase_user"
# How long one task run waits for older transactions before it is sent again.
WAIT_SECONDS = 5.0


def user_erasure_start(*, user_id: str) -> ErasedUser:
    """Write (or renew) the user's tombstone; the caller sends the task after the commit."""
    with transaction.atomic():
        tombstone, _ = ErasedUser.objects.update_or_create(
            user_id=user_id,
            # ``pending`` is kept: a renewed erasure still cleans what an unfinished one deleted.
            defaults={"erased_us": now_micros(), "requested_at": timezone.now(), "finished_at": None},
        )
    return tombstone


def erase_task_send(
    *, user_id: str, cutoff: datetime | None = None, finish_erased_us: int | None = None, countdown: float | None = None
) -> None:
    """Send the task: its deleting run (``cutoff``: the start time older transactions are
    waited for, kept across runs), or its finishing run for the tombstone of that time."""
    kwargs = {
        "user_id": user_id,
        "cutoff": cutoff.isoformat() if cutoff else None,
        "finish_erased_us": finish_erased_us,
    }
    celery_app.send_task(ERASE_USER_TASK, kwargs=kwargs, countdown=countdown, ignore_result=True)


def database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def _older_transactions(cutoff: datetime) -> int:
    """Client transactions of this database that started before ``cutoff``, still open."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend' AND xact_start < %s""",
            [cutoff],
        )
        return int(cursor.fetchone()[0])


def older_transactions_wait(cutoff: datetime, budget_seconds: float) -> bool:
    deadline = time.monotonic() + budget_seconds
    while _older_transactions(cutoff):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _hidden_delete(user_id: str) -> set[tuple[int, str]]:
    """Delete the user's hidden-user rows; returns a (board, current period) for each, so
    that step 4 empties the board's hidden set too, where the user may have no row."""
    hidden = set(HiddenUser.objects.filter(user_id=user_id).values_list("leaderboard_id", flat=True))
    HiddenUser.objects.filter(user_id=user_id).delete()
    return {(board.id, board.current_period()) for board in leaderboards_by_id(hidden).values()}


def _rows_delete(user_id: str) -> list[tuple[int, str]]:
    """Delete the user's scores, event ids, profiles and hidden-user rows; returns every
    (board, period) left to clean."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM scores_score WHERE user_id = %s RETURNING leaderboard_id, period", [user_id])
        deleted = {(board_id, period) for board_id, period in cursor.fetchall()}
        cursor.execute("DELETE FROM scores_processedevent WHERE user_id = %s", [user_id])
        cursor.execute("DELETE FROM scores_entryprofile WHERE user_id = %s RETURNING leaderboard_id, period", [user_id])
        deleted |= {(board_id, period) for board_id, period in cursor.fetchall()}
        deleted |= _hidden_delete(user_id)
        tombstone = ErasedUser.objects.select_for_update().get(user_id=user_id)
        pending = sorted(deleted | {(board_id, period) for board_id, period in tombstone.pending})
        tombstone.pending = [list(pair) for pair in pending]
        tombstone.save(update_fields=["pending"])
    return pending


def rankings_clean(user_id: str, pending: list[tuple[int, str]]) -> None:
    client = cache.redis_client()
    boards = leaderboards_by_id({board_id for board_id, _ in pending})
    for board_id, period in pending:
        board = boards.get(board_id)
        if board is None:
            continue  # deleted meanwhile: its keys go with it
        cache.index_remove_user(client, board_id, period, user_id)
        cache.profiles_remove(client, board_id, period, user_id)
        topn_rebuild(leaderboard=board, period=period)


@dataclass(frozen=True)
class EraseStep:
    """What one run of the task did: "waiting" (run again with ``cutoff``), "grace" (run
    the finishing step after the grace period), "done" (nothing left)."""

    outcome: str
    cutoff: datetime | None = None
    erased_us: int | None = None


def user_erase_step(*, user_id: str, cutoff: datetime | None, wait_seconds: float = WAIT_SECONDS) -> EraseStep:
    """Steps 1 to 3 (see the module). Safe to run again: every step is idempotent."""
    tombstone = ErasedUser.objects.filter(user_id=user_id).first()
    if tombstone is None or tombstone.finished_at is not None:
        return EraseStep("done")
    # The task runs after the tombstone's commit: every transaction that started before
    # it committed also started before this instant.
    cutoff = cutoff or database_now()
    if not older_transactions_wait(cutoff, wait_seconds):
        return EraseStep("waiting", cutoff)
    pending = _rows_delete(user_id)
    rankings_clean(user_id, pending)
    return EraseStep("grace", cutoff, tombstone.erased_us)


def user_erase_finish(*, user_id: str, erased_us: int) -> EraseStep:
    """Step 4: out of the hidden sets again, and the tombstone finished (unless the
    erasure was renewed meanwhile: the renewal's own task finishes it)."""
    tombstone = ErasedUser.objects.filter(user_id=user_id, erased_us=erased_us, finished_at__isnull=True).first()
    if tombstone is None:
        return EraseStep("done")
    client = cache.redis_client()
    still_hidden = set(HiddenUser.objects.filter(user_id=user_id).values_list("leaderboard_id", flat=True))
    for board_id in sorted({board_id for board_id, _ in tombstone.pending} - still_hidden):
        cache.hidden_remove(client, board_id, [user_id])
    ErasedUser.objects.filter(user_id=user_id, erased_us=erased_us).update(pending=[], finished_at=timezone.now())
    return EraseStep("done")


def erasures_resume() -> int:
    """Send the task again for erasures left unfinished (a lost task message, a broker
    down at the request); run every minute by beat ("resume lost erasures")."""
    stale = timezone.now() - timedelta(minutes=1)
    users = list(
        ErasedUser.objects.filter(finished_at__isnull=True, requested_at__lt=stale).values_list("user_id", flat=True)
    )
    for user_id in users:
        erase_task_send(user_id=user_id)
    return len(users)
