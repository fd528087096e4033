"""Every beat schedule, in one place; ``manage.py install_schedules`` writes them to the
django-celery-beat tables, where operators can then edit them in the admin."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    every_seconds: int
    expires_seconds: int
    queue: str = "maintenance"


SCHEDULES = [
    # A root lost with its worker (or never scheduled) leaves partials waiting: find them.
    Schedule("sweep stranded merge rounds", "tasks.maintenance.sweep_rounds", every_seconds=5, expires_seconds=4),
    # Fans out one reconcile per changed board (and a slow sweep): repairs what a crash left
    # stale, the top-N table and cache, a stale or lost rank index.
    Schedule("reconcile top-N", "tasks.maintenance.reconcile_topn", every_seconds=30, expires_seconds=25),
    # Resetting boards: opens the next period, closes finished ones (final top-N stored) a
    # grace after their end, purges those past keep_periods.
    Schedule("close and purge periods", "tasks.maintenance.period_upkeep", every_seconds=30, expires_seconds=25),
    # An erasure left unfinished (its task lost) holds back ingest batches with the user's
    # later events: send it again soon.
    Schedule("resume lost erasures", "tasks.maintenance.resume_erasures", every_seconds=60, expires_seconds=55),
    # A board marked for deletion whose clean-up task was lost (a broker down at the
    # request) would keep its rows for good: send the task again.
    Schedule("resume board deletions", "tasks.cleanup.resume_board_deletions", every_seconds=60, expires_seconds=55),
    Schedule("purge old event ids", "tasks.maintenance.purge_event_ids", every_seconds=3600, expires_seconds=3000),
]
