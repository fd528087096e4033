"""Deleting one user's entry on one board, every period (``DELETE …/{slug}/users/{id}``):
the erasure's rules (``rankings.erasure``) for one board.

The request writes a tombstone (``DeletedEntry``, stamped on the accepted-time clock) and
answers 202; ingest then drops the user's events on that board accepted at or before it
(``scores.tombstones``). The task waits for every database transaction older than the
tombstone, deletes the user's score rows and event ids on the board, takes the user out
of each period's rank index and rebuilds its top-N, and a grace period later takes the
user out of the board's hidden set again (unless an operator hid them) and marks the
deletion finished: events accepted after it then count afresh. Other boards are untouched.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from leaderboard_project.celery import app as celery_app
from rankings import cache
from rankings.erasure import WAIT_SECONDS, EraseStep, database_now, older_transactions_wait, rankings_clean
from rankings.models import HiddenUser, Leaderboard
from scores.models import DeletedEntry
from scores.services import now_micros

DELETE_ENTRY_TASK = "tasks.maintenance.delete_entry"


@dataclass(frozen=True)
class EntryRef:
    user_id: str
    leaderboard_id: int


def entry_deletion_start(*, leaderboard: Leaderboard, user_id: str) -> DeletedEntry:
    """Write (or renew) the entry's tombstone; the caller sends the task."""
    with transaction.atomic():
        tombstone, _ = DeletedEntry.objects.update_or_create(
            user_id=user_id,
            leaderboard_id=leaderboard.id,
            defaults={"deleted_us": now_micros(), "requested_at": timezone.now(), "finished_at": None},
        )
    return tombstone


def entry_delete_task_send(
    entry: EntryRef,
    *,
    cutoff: datetime | None = None,
    finish_deleted_us: int | None = None,
    countdown: float | None = None,
) -> None:
    kwargs = {
        "user_id": entry.user_id,
        "leaderboard_id": entry.leaderboard_id,
        "cutoff": cutoff.isoformat() if cutoff else None,
        "finish_deleted_us": finish_deleted_us,
    }
    celery_app.send_task(DELETE_ENTRY_TASK, kwargs=kwargs, countdown=countdown, ignore_result=True)


def _rows_delete(entry: EntryRef) -> list[tuple[int, str]]:
    """Delete the entry's scores, event ids and profiles; every (board, period) left to clean."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM scores_score WHERE user_id = %s AND leaderboard_id = %s RETURNING period",
            [entry.user_id, entry.leaderboard_id],
        )
        deleted = {period for (period,) in cursor.fetchall()}
        cursor.execute(
            "DELETE FROM scores_processedevent WHERE user_id = %s AND leaderboard_id = %s",
            [entry.user_id, entry.leaderboard_id],
        )
        cursor.execute(
            "DELETE FROM scores_entryprofile WHERE user_id = %s AND leaderboard_id = %s RETURNING period",
            [entry.user_id, entry.leaderboard_id],
        )
        deleted |= {period for (period,) in cursor.fetchall()}
        tombstone = DeletedEntry.objects.select_for_update().get(
            user_id=entry.user_id, leaderboard_id=entry.leaderboard_id
        )
        pending = sorted(deleted | set(tombstone.pending))
        tombstone.pending = pending
        tombstone.save(update_fields=["pending"])
    return [(entry.leaderboard_id, period) for period in pending]


def entry_delete_step(*, entry: EntryRef, cutoff: datetime | None, wait_seconds: float = WAIT_SECONDS) -> EraseStep:
    """Wait, delete, clean the rankings (idempotent: safe to run again)."""
    tombstone = DeletedEntry.objects.filter(user_id=entry.user_id, leaderboard_id=entry.leaderboard_id).first()
    if tombstone is None or tombstone.finished_at is not None:
        return EraseStep("done")
    cutoff = cutoff or database_now()
    if not older_transactions_wait(cutoff, wait_seconds):
        return EraseStep("waiting", cutoff)
    rankings_clean(entry.user_id, _rows_delete(entry))
    return EraseStep("grace", cutoff, tombstone.deleted_us)


def entry_delete_finish(*, entry: EntryRef, deleted_us: int) -> EraseStep:
    """Out of the board's hidden set again (unless hidden by an operator), and finished
    (unless the deletion was renewed meanwhile: the renewal's task finishes it)."""
    tombstone = DeletedEntry.objects.filter(
        user_id=entry.user_id, leaderboard_id=entry.leaderboard_id, deleted_us=deleted_us, finished_at__isnull=True
    ).first()
    if tombstone is None:
        return EraseStep("done")
    if not HiddenUser.objects.filter(user_id=entry.user_id, leaderboard_id=entry.leaderboard_id).exists():
        cache.hidden_remove(cache.redis_client(), entry.leaderboard_id, [entry.user_id])
    DeletedEntry.objects.filter(
        user_id=entry.user_id, leaderboard_id=entry.leaderboard_id, deleted_us=deleted_us
    ).update(pending=[], finished_at=timezone.now())
    return EraseStep("done")


def entry_deletions_resume() -> int:
    """Send the task again for deletions left unfinished (beat, with the erasures)."""
    stale = timezone.now() - timedelta(minutes=1)
    entries = DeletedEntry.objects.filter(finished_at__isnull=True, requested_at__lt=stale)
    refs = [EntryRef(user_id, board_id) for user_id, board_id in entries.values_list("user_id", "leaderboard_id")]
    for entry in refs:
        entry_delete_task_send(entry)
    return len(refs)


def deleted_entries_purge() -> int:
    """Forget finished deletions past the event-id retention window (as the erasures)."""
    cutoff = timezone.now() - timedelta(hours=settings.LEADERBOARD_EVENT_ID_RETENTION_HOURS)
    deleted, _ = DeletedEntry.objects.filter(requested_at__lt=cutoff, finished_at__isnull=False).delete()
    return deleted
