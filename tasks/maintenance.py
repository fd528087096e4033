"""Maintenance tasks run by beat: sweep stranded rounds, reconcile the top-N, purge old event ids."""

from celery import shared_task

from rankings.services import reconcile_all, rounds_sweep
from scores.maintenance import processed_events_purge


@shared_task(name="tasks.maintenance.reconcile_topn", expires=55)
def reconcile_topn() -> int:
    return reconcile_all()


@shared_task(name="tasks.maintenance.purge_event_ids", expires=3500)
def purge_event_ids() -> int:
    return processed_events_purge()


@shared_task(name="tasks.maintenance.sweep_rounds", expires=4)
def sweep_rounds() -> int:
    return rounds_sweep()
