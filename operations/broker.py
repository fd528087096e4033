"""What the operator asks RabbitMQ: queue depths and consumers, the dead-letter queue.

Everything goes through passive ``queue_declare`` (never creates or changes a queue) and
``basic_get``; no management plugin is needed.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import amqp
from amqp.exceptions import AMQPError
from django.conf import settings
from kombu import Connection
from kombu.exceptions import OperationalError

from tasks.queues import QueueRole, all_queue_names, ingest_queue_name, role_queue_name

logger = logging.getLogger(__name__)

# A broker that does not answer within this fails the check; health probes must not hang.
BROKER_TIMEOUT_SECONDS = 2.0
BROKER_ERRORS = (OSError, OperationalError, AMQPError)
# Headers RabbitMQ adds when it dead-letters a message; a requeued message starts clean.
_DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")


@dataclass(frozen=True)
class QueueStats:
    name: str
    messages: int
    consumers: int


@dataclass(frozen=True)
class DeadLetter:
    task: str
    queue: str | None  # the queue it died in (where a requeue sends it)
    reason: str | None
    body: str


def dead_queue_name() -> str:
    return role_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, QueueRole.DEAD)


def ingest_queue_names() -> list[str]:
    prefix = settings.LEADERBOARD_QUEUE_PREFIX
    return [ingest_queue_name(prefix, n) for n in range(settings.LEADERBOARD_INGEST_PARTITIONS)]


def pipeline_queue_names() -> list[str]:
    """Every work queue, then the dead-letter queue."""
    prefix = settings.LEADERBOARD_QUEUE_PREFIX
    return [*all_queue_names(prefix, settings.LEADERBOARD_INGEST_PARTITIONS), dead_queue_name()]


@contextmanager
def broker_connection() -> Iterator[Connection]:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        yield conn


def queue_stats(names: list[str]) -> dict[str, QueueStats | None]:
    """Depth and consumers per queue; None for a queue that does not exist or when the
    broker does not answer."""
    stats: dict[str, QueueStats | None] = dict.fromkeys(names)
    try:
        with broker_connection() as conn:
            for name in names:
                # A passive declare of a missing queue closes its channel: one channel each.
                channel = conn.channel()
                try:
                    ok = channel.queue_declare(queue=name, passive=True)
                    stats[name] = QueueStats(name, ok.message_count, ok.consumer_count)
                except amqp.exceptions.NotFound:
                    continue
                finally:
                    if channel.is_open:
                        channel.close()
    except BROKER_ERRORS as exc:
        logger.warning("broker did not answer queue declares: %s", exc)
    return stats


def _dead_letter(message: amqp.Message) -> DeadLetter:
    headers = message.properties.get("application_headers") or {}
    deaths = headers.get("x-death") or [{}]
    body = message.body.decode(errors="replace") if isinstance(message.body, bytes) else str(message.body)
    return DeadLetter(
        task=str(headers.get("task", "?")),
        queue=deaths[0].get("queue"),
        reason=deaths[0].get("reason"),
        body=body if len(body) <= 500 else body[:500] + "…",
    )


@contextmanager
def _dead_letters_taken(limit: int) -> Iterator[tuple[Any, Iterator[amqp.Message]]]:
    """A channel and up to ``limit`` dead letters taken unacknowledged on it; closing the
    channel at the end returns every letter not acked to the dead queue."""
    with broker_connection() as conn:
        channel = conn.channel()

        def letters() -> Iterator[amqp.Message]:
            for _ in range(limit):
                message = channel.basic_get(queue=dead_queue_name(), no_ack=False)
                if message is None:
                    return
                yield message

        try:
            yield channel, letters()
        finally:
            channel.close()


def dead_letters_peek(*, limit: int = 5) -> list[DeadLetter]:
    """The first ``limit`` dead letters, left where they are (read without an ack; closing
    the channel returns them to the queue)."""
    with _dead_letters_taken(limit) as (_channel, letters):
        return [_dead_letter(message) for message in letters]


def dead_letters_requeue(*, limit: int = 100) -> int:
    """Move up to ``limit`` dead letters back to the queue each died in; return how many.

    Each is republished (persistent, confirmed by the broker) before it is acked, so a
    crash in between leaves a copy in both queues, never in none: the ingest
    de-duplication makes the extra copy harmless. Letters without a known queue stay.
    """
    moved = 0
    with _dead_letters_taken(limit) as (channel, letters):
        for message in letters:
            letter = _dead_letter(message)
            if letter.queue is None:
                continue  # held unacked until the channel closes: stays in the dead queue
            headers = {
                key: value
                for key, value in (message.properties.get("application_headers") or {}).items()
                if key not in _DEATH_HEADERS
            }
            properties: dict[str, Any] = {**message.properties, "application_headers": headers, "delivery_mode": 2}
            republished = amqp.Message(message.body, **properties)
            channel.basic_publish_confirm(republished, exchange="", routing_key=letter.queue)
            channel.basic_ack(message.delivery_tag)
            moved += 1
    return moved


def dead_letter_body(letter: DeadLetter) -> Any:
    """The message body as JSON when it is JSON (Celery's are), else the text."""
    try:
        return json.loads(letter.body)
    except ValueError:
        return letter.body


def dead_letters_requeue_all(*, chunk: int = 100) -> int:
    """Requeue every letter that was in the dead-letter queue when called, ``chunk`` at a
    time; return how many moved. A letter that dies again meanwhile is not taken twice
    (the count is fixed at the start), and a letter with no known queue stays."""
    depth = queue_stats([dead_queue_name()])[dead_queue_name()]
    if depth is None:
        raise OperationalError(f"the broker did not answer for {dead_queue_name()}")
    moved, remaining = 0, depth.messages
    while remaining > 0:
        step = dead_letters_requeue(limit=min(chunk, remaining))
        if not step:
            break  # only letters with no known queue are left at the head
        moved += step
        remaining -= step
    return moved
