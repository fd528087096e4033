"""Maintenance tasks run by beat: sweep stranded rounds, reconcile the top-N, purge old
event ids, open, close and purge the periods of resetting boards; and the background half
of erasing a user."""

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from operations.reconcile import reconcile_mark
from rankings.cache import redis_client
from rankings.entry_deletion import (
    DELETE_ENTRY_TASK,
    EntryRef,
    deleted_entries_purge,
    entry_delete_finish,
    entry_delete_step,
    entry_delete_task_send,
    entry_deletions_resume,
)
from rankings.erasure import ERASE_USER_TASK, erase_task_send, erasures_resume, user_erase_finish, user_erase_step
from rankings.period_upkeep import PERIOD_UPKEEP_TASK, periods_upkeep
from rankings.selectors import leaderboards_by_id
from rankings.services import board_reconcile, reconcile_fanout, rounds_sweep
from scores.maintenance import erased_users_purge, processed_events_purge
from tasks.beat import BEAT_CLAIM_HEADER, schedule_run_claim
from tasks.errors import TRANSIENT_ERRORS

logger = logging.getLogger(__name__)


class ScheduledTask(Task):
    """A task that beat sends: its first attempt runs only if it claims the schedule's
    interval (``tasks.beat``); a second beat's send of the same interval returns None.
    Runs sent otherwise (a test, the admin's "Run selected tasks") always run."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        schedule_name = getattr(self.request, "periodic_task_name", None)
        if schedule_name and getattr(self.request, BEAT_CLAIM_HEADER, False) and not self.request.retries:
            if not schedule_run_claim(schedule_name=schedule_name, run_id=self.request.id or ""):
                logger.info("%r was run this interval (another beat sent it too): skipped", schedule_name)
                return None
        return super().__call__(*args, **kwargs)


@shared_task(base=ScheduledTask, name="tasks.maintenance.reconcile_topn", expires=55)
def reconcile_topn() -> int:
    """Fan out: one ``reconcile_board`` per board that changed (and a few of a slow
    sweep), so the beat task stays short with any number of boards."""
    boards = reconcile_fanout()
    reconcile_mark(redis_client(), timezone.now(), boards)
    return boards


@shared_task(name="tasks.maintenance.reconcile_board", autoretry_for=TRANSIENT_ERRORS, max_retries=3, retry_backoff=2)
def reconcile_board(leaderboard_id: int, period: str) -> None:
    board = leaderboards_by_id({leaderboard_id}).get(leaderboard_id)
    if board is not None:  # deleted since it was touched
        board_reconcile(leaderboard=board, period=period)


@shared_task(base=ScheduledTask, name="tasks.maintenance.purge_event_ids", expires=3500)
def purge_event_ids() -> int:
    erased_users_purge()
    deleted_entries_purge()
    return processed_events_purge()


@shared_task(base=ScheduledTask, name="tasks.maintenance.resume_erasures", expires=55)
def resume_erasures() -> int:
    """Erasures whose task was lost: ingest holds back a batch with a later event of such a
    user until the erasure finishes, so waiting an hour for the purge would stall it."""
    return erasures_resume() + entry_deletions_resume()


@shared_task(
    name=ERASE_USER_TASK,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,
)
def erase_user(user_id: str, cutoff: str | None = None, finish_erased_us: int | None = None) -> str:
    """Erase a user (rankings.erasure): delete, then a grace period later finish. Each
    run is bounded; a run that had to wait for older transactions sends the next one."""
    if finish_erased_us is not None:
        return user_erase_finish(user_id=user_id, erased_us=finish_erased_us).outcome
    step = user_erase_step(user_id=user_id, cutoff=datetime.fromisoformat(cutoff) if cutoff else None)
    if step.outcome == "waiting":
        erase_task_send(user_id=user_id, cutoff=step.cutoff, countdown=1)
    elif step.outcome == "grace":
        erase_task_send(
            user_id=user_id, finish_erased_us=step.erased_us, countdown=settings.LEADERBOARD_ERASE_GRACE_SECONDS
        )
    return step.outcome


@shared_task(
    name=DELETE_ENTRY_TASK,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,
)
def delete_entry(
    user_id: str, leaderboard_id: int, cutoff: str | None = None, finish_deleted_us: int | None = None
) -> str:
    """Delete one user's entry on one board (rankings.entry_deletion), as erase_user does
    for every board: delete, then a grace period later finish."""
    entry = EntryRef(user_id, leaderboard_id)
    if finish_deleted_us is not None:
        return entry_delete_finish(entry=entry, deleted_us=finish_deleted_us).outcome
    step = entry_delete_step(entry=entry, cutoff=datetime.fromisoformat(cutoff) if cutoff else None)
    if step.outcome == "waiting":
        entry_delete_task_send(entry, cutoff=step.cutoff, countdown=1)
    elif step.outcome == "grace":
        entry_delete_task_send(
            entry, finish_deleted_us=step.erased_us, countdown=settings.LEADERBOARD_ERASE_GRACE_SECONDS
        )
    return step.outcome


@shared_task(base=ScheduledTask, name="tasks.maintenance.sweep_rounds", expires=4)
def sweep_rounds() -> int:
    return rounds_sweep()


@shared_task(
    base=ScheduledTask,
    name=PERIOD_UPKEEP_TASK,
    expires=55,
    autoretry_for=TRANSIENT_ERRORS,
    max_retries=3,
    retry_backoff=2,
)
def period_upkeep(now_us: int | None = None) -> dict[str, list[str]]:
    """Open the next periods, close the finished ones, purge those past keep_periods.
    ``now_us`` is for tests that set the clock; beat sends none. A purge cut short by
    the budget is finished by the next run."""
    report = periods_upkeep(now_us=now_us, budget_seconds=settings.CELERY_TASK_SOFT_TIME_LIMIT / 3)
    return asdict(report)
