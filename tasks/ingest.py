"""Ingest tasks: apply batches of score events, then hand the changed rows to ranking."""

import logging

from celery import Task, shared_task
from django.conf import settings
from django.db import connection

from rankings.activity import board_activity_record_batch
from rankings.cache import redis_client
from rankings.services import ranking_handoff
from scores.admission import backlog_count
from scores.services import score_events_apply
from scores.tombstones import ErasureInProgress
from tasks.consuming import messages_taken
from tasks.errors import TRANSIENT_ERRORS
from tasks.messages import ScoreEvent, ingest_batch_from_payload
from tasks.queues import APPLY_EVENTS_TASK

logger = logging.getLogger(__name__)


def _stores_answer() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        redis_client().ping()
    except TRANSIENT_ERRORS:
        return False
    return True


def _apply(events: list[ScoreEvent]) -> int:
    changed = score_events_apply(events=events)
    board_activity_record_batch(events)
    ranking_handoff(changed=changed, oldest_accepted_us=min(event.accepted_us for event in events))
    return len(changed)


@shared_task(
    name=APPLY_EVENTS_TASK,
    bind=True,
    # An erasure still running for a user of the batch passes like an outage (seconds).
    autoretry_for=(*TRANSIENT_ERRORS, ErasureInProgress),
    retry_backoff=1,
    retry_backoff_max=10,
    retry_jitter=True,
    # Outages pass: the batch waits them out (its events are de-duplicated on retry).
    max_retries=None,
)
def apply_events(self: Task, batch: list) -> int:
    """Apply this message's events, with the messages waiting behind it on its queue, in
    one transaction. Safe to run twice: event ids are recorded once."""
    own = ingest_batch_from_payload(batch)
    delivery = self.request.delivery_info or {}
    # A redelivered message may be the one that killed its last worker: alone it goes.
    # And nothing more is taken while the stores are away: messages taken and handed back
    # during an outage would each count a delivery towards the queue's limit.
    healthy = not delivery.get("redelivered") and _stores_answer()
    queue = delivery.get("routing_key") if healthy else None
    extra_messages = 0
    try:
        with messages_taken(
            queue, settings.LEADERBOARD_INGEST_TAKE_MESSAGES, settings.LEADERBOARD_INGEST_TAKE_EVENTS
        ) as taken:
            extra_messages = taken.count
            events = [*own.events, *(event for extra in taken.batches for event in extra.events)]
            changed = _apply(events)
            # One line per transaction, read by the benchmark.
            logger.info("ingest transaction: messages=%d events=%d", 1 + extra_messages, len(events))
            backlog_count(applied=len(events))
            return changed
    except (*TRANSIENT_ERRORS, ErasureInProgress):
        raise
    except Exception:
        if not extra_messages:
            raise
        # The taken messages are back on the queue; if one of them was the poison, this
        # message must not be dead-lettered for it: apply it alone.
        logger.exception("ingest transaction of %d messages failed; applying this one alone", 1 + extra_messages)
        changed = _apply(list(own.events))
        backlog_count(applied=len(own.events))
        return changed
