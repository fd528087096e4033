"""Ingest tasks: apply a batch of score events, then hand the changed rows to ranking."""

from celery import shared_task

from scores.services import score_events_apply
from tasks.errors import TRANSIENT_ERRORS
from tasks.ranking import ranking_dispatch


@shared_task(
    name="tasks.ingest.apply_events",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=1,
    retry_backoff_max=10,
    retry_jitter=True,
    # Outages pass: the batch waits them out (its events are de-duplicated on retry).
    max_retries=None,
)
def apply_events(events: list[list]) -> int:
    """Apply one message's events. Safe to run twice: event ids are recorded once."""
    changed = score_events_apply(events=events)
    __import__("rankings.activity").activity.board_activity_record_batch(events)  # ops hook
    ranking_dispatch(changed)
    return len(changed)
