"""Ingest tasks: apply batches of score events, then hand the changed rows to ranking."""

import logging
import time
from collections import Counter

from celery import Task, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import connection
from redis.client import Pipeline

from rankings.activity import boards_activity_queue
from rankings.services import ranking_handoff
from scores.admission import backlog_applied_queue
from scores.services import score_events_apply
from scores.tombstones import ErasureInProgress
from tasks.consuming import TakenMessages, messages_abandon, messages_take
from tasks.errors import TRANSIENT_ERRORS
from tasks.messages import IngestBatch, ScoreEvent, ingest_batch_from_payload
from tasks.queues import APPLY_EVENTS_TASK

logger = logging.getLogger(__name__)


def _apply(events: list[ScoreEvent], redelivered: bool) -> int:
    """``redelivered``: one of these messages' last worker died before acknowledging it,
    maybe between claiming its boards' roots and scheduling them (see rankings.rounds)."""
    changed = score_events_apply(events=events)
    per_board = dict(Counter(event.leaderboard_id for event in events))
    now = time.time()

    def counters(pipe: Pipeline) -> None:
        # The live page's events/s and the admission backlog, in the hand-off's round trip.
        boards_activity_queue(pipe, per_board, now)
        backlog_applied_queue(pipe, len(events))

    oldest = min(event.accepted_us for event in events)
    ranking_handoff(changed=changed, oldest_accepted_us=oldest, also=counters, redelivered=redelivered)
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


# Failures that pass, so the batch waits them out: a store away, a store too slow for the
# soft time limit (a held lock, a failover's hanging connection), an erasure still running.
PASSING_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, SoftTimeLimitExceeded, ErasureInProgress)


class IngestTask(Task):
    """Celery's task, except for a retry that cannot be published: Celery dead-letters
    its message (``Reject(requeue=False)``); an accepted batch goes back to its queue."""

    def retry(self, *args: object, **kwargs: object) -> object:
        try:
            return super().retry(*args, **kwargs)
        except Reject as rejected:
            if rejected.requeue:
                raise
            logger.warning("could not publish an ingest retry (%s); the message returns to its queue", rejected.reason)
            raise Reject(rejected.reason, requeue=True) from rejected


def _passing(exc: Exception) -> None:
    if isinstance(exc, SoftTimeLimitExceeded):
        # The connection may be mid-statement: drop it (the server rolls it back).
        connection.close()
    if not isinstance(exc, ErasureInProgress):
        _outage.seen()


def _backoff(retries: int) -> float:
    # The task's own retry policy (below), for the messages it gives back.
    return get_exponential_backoff_interval(factor=1, retries=retries, maximum=10, full_jitter=True)


@shared_task(
    name=APPLY_EVENTS_TASK,
    bind=True,
    base=IngestTask,
    autoretry_for=PASSING_ERRORS,
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
    redelivered = bool(delivery.get("redelivered"))
    alone = redelivered or _outage.recent()
    queue = None if alone else delivery.get("routing_key")
    taken = messages_take(queue, settings.LEADERBOARD_INGEST_TAKE_MESSAGES, settings.LEADERBOARD_INGEST_TAKE_EVENTS)
    try:
        return _apply_with(own, taken, self.request.retries, redelivered)
    finally:
        if taken.messages:  # an exit nobody foresaw: they return to the queue
            messages_abandon()


def _apply_with(own: IngestBatch, taken: TakenMessages, retries: int, redelivered: bool) -> int:
    messages, events = 1 + taken.count, [*own.events, *taken.events]
    try:
        changed = _apply(events, redelivered or taken.redelivered)
    except PASSING_ERRORS as exc:
        _passing(exc)
        taken.give_back_all(_backoff(retries))
        raise  # this message retries
    except Exception:
        if not taken.count:
            raise  # alone, and for good: dead-lettered
        # One of them may be the poison: each runs alone, so only the poison is dead-lettered.
        logger.exception("ingest transaction of %d messages failed; applying each alone", messages)
        _settle_alone(taken)
        return _apply(list(own.events), redelivered)
    taken.ack()
    # One line per transaction, read by the benchmark.
    logger.info("ingest transaction: messages=%d events=%d", messages, len(events))
    return changed


def _settle_alone(taken: TakenMessages) -> None:
    pending, taken.messages = list(taken.messages), []
    while pending:
        one = pending.pop(0)
        try:
            _apply(list(one.batch.events), one.redelivered)
        except PASSING_ERRORS as exc:
            _passing(exc)
            taken.give_back([one, *pending], _backoff(0))
            return
        except Exception:
            logger.exception("dead-lettering an ingest message that fails alone")
            taken.dead_letter_one(one)
        else:
            taken.ack_one(one)
