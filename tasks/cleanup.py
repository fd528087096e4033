"""Clean-up tasks on the maintenance queue: the background half of deleting a board."""

from celery import shared_task
from django.conf import settings

from rankings.deletion import DELETE_BOARD_TASK, board_delete_step, board_deletions_resume
from tasks.errors import TRANSIENT_ERRORS
from tasks.maintenance import ScheduledTask


@shared_task(
    name=DELETE_BOARD_TASK,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    max_retries=None,
)
def delete_board(leaderboard_id: int) -> bool:
    """Delete a chunk of the board's rows per run, well inside the task time limit, and
    queue the next run until the board is gone."""
    done = board_delete_step(
        leaderboard_id=leaderboard_id,
        chunk=settings.LEADERBOARD_DELETE_CHUNK_USERS,
        budget_seconds=settings.CELERY_TASK_SOFT_TIME_LIMIT / 3,
    )
    if not done:
        delete_board.apply_async(args=[leaderboard_id], ignore_result=True)
    return done


@shared_task(base=ScheduledTask, name="tasks.cleanup.resume_board_deletions", expires=55)
def resume_board_deletions() -> int:
    return board_deletions_resume()
