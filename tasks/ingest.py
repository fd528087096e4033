"""Ingest tasks: apply batches of score events, then hand the changed rows to ranking."""

import logging
import time
from collections import Counter

from celery import Task, shared_task
from django.conf import settings
from redis.client import Pipeline

from rankings.activity import boards_activity_queue
from rankings.services import ranking_handoff
from scores.admission import backlog_applied_queue
from scores.services import score_events_apply
from scores.tombstones import ErasureInProgress
from tasks.consuming import messages_taken
from tasks.errors import TRANSIENT_ERRORS
from tasks.messages import ScoreEvent, ingest_batch_from_payload
from tasks.queues import APPLY_EVENTS_TASK

logger = logging.getLogger(__name__)


def _apply(events: list[ScoreEvent]) -> int:
    changed = score_events_apply(events=events)
    per_board = dict(Counter(event.leaderboard_id for event in events))
    now = time.time()

    def counters(pipe: Pipeline) -> None:
        # The live page's events/s and the admission backlog, in the hand-off's round trip.
        boards_activity_queue(pipe, per_board, now)
        backlog_applied_queue(pipe, len(events))

    ranking_handoff(changed=changed, oldest_accepted_us=min(event.accepted_us for event in events), also=counters)
    return len(changed)


class _StoresOutage:
    """When this process last met a store outage. No store is pinged per task: a task
    that failed on a transient error marks it, and for a while after, tasks take no
    extra messages (taken and handed back during an outage, each would count a
    delivery towards its queue's limit)."""

    def __init__(self, quiet_seconds: float) -> None:
        self.quiet_seconds = quiet_seconds
        self._last = float("-inf")

    def seen(self) -> None:
        self._last = time.monotonic()

    def recent(self) -> bool:
        return time.monotonic() - self._last < self.quiet_seconds


_outage = _StoresOutage(quiet_seconds=10.0)


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
    # And nothing more is taken soon after an outage (see _StoresOutage).
    alone = delivery.get("redelivered") or _outage.recent()
    queue = None if alone else delivery.get("routing_key")
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
            return changed
    except TRANSIENT_ERRORS:
        _outage.seen()
        raise
    except ErasureInProgress:
        raise
    except Exception:
        if not extra_messages:
            raise
        # The taken messages are back on the queue; if one of them was the poison, this
        # message must not be dead-lettered for it: apply it alone.
        logger.exception("ingest transaction of %d messages failed; applying this one alone", 1 + extra_messages)
        return _apply(list(own.events))
