"""Maintenance tasks run by beat: sweep stranded rounds, reconcile the top-N, purge old event ids."""

from celery import shared_task
from django.utils import timezone

from operations.reconcile import reconcile_mark
from rankings.cache import redis_client
from rankings.services import reconcile_all, rounds_sweep
from scores.maintenance import processed_events_purge


@shared_task(name="tasks.maintenance.reconcile_topn", expires=55)
def reconcile_topn() -> int:
    boards = reconcile_all()
    reconcile_mark(redis_client(), timezone.now(), boards)
    return boards


@shared_task(name="tasks.maintenance.purge_event_ids", expires=3500)
def purge_event_ids() -> int:
    return processed_events_purge()


@shared_task(name="tasks.maintenance.sweep_rounds", expires=4)
def sweep_rounds() -> int:
    return rounds_sweep()
