"""More messages for one ingest transaction: when a queue backs up, take what waits.

Celery hands a task one message. When messages queue up, applying each in a transaction
of its own costs a commit and a hand-off per message; instead the ingest task takes up
to N more ingest messages waiting on its queue (``basic_get``, unacknowledged), applies
all of them in its one transaction, and acknowledges them only after the commit. If the
process dies at any point, the broker redelivers the unacknowledged messages, and their
event ids make a second application a no-op; if the transaction fails, they are put
back on the queue at once. With an empty queue nothing is taken and nothing waits.

Redelivered messages are kept apart, so that a message that kills its worker every time
(the ingest queues' delivery limit dead-letters it) drags no innocent message along to
that limit: a task whose own message is a redelivery takes nothing more, and a redelivered
message ends the taking. An innocent message batched with such a poison is therefore
returned at most once before it runs alone or last.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from amqp import Message
from kombu import Connection
from kombu.utils.json import loads

from leaderboard_project.celery import app as celery_app
from tasks.messages import IngestBatch, ingest_batch_from_payload
from tasks.queues import APPLY_EVENTS_TASK

logger = logging.getLogger(__name__)


class _QueueReader:
    """This process's own connection for taking messages (pool processes are forked:
    each opens its own, lazily)."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._connection: Connection | None = None

    def channel(self) -> Any:
        if self._pid != os.getpid() or self._connection is None:
            self._connection = celery_app.connection_for_read(heartbeat=0)
            self._pid = os.getpid()
        return self._connection.default_channel

    def reset(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            try:
                self._connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                logger.debug("closing a broken reader connection failed", exc_info=True)
        self._connection = None


_reader = _QueueReader()


@dataclass
class TakenMessages:
    batches: list[IngestBatch] = field(default_factory=list)
    _channel: Any = None
    _tags: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self._tags)

    def requeue(self) -> None:
        """Give the messages back now (the transaction failed); a failure here leaves them
        to the broker, which requeues them when the connection closes."""
        try:
            for tag in self._tags:
                self._channel.basic_reject(tag, True)
        except Exception:  # noqa: BLE001 - see the docstring
            _reader.reset()
        self.batches, self._tags = [], []

    def ack(self) -> None:
        if not self._tags:
            return
        try:
            self._channel.basic_ack(self._tags[-1], multiple=True)
        except Exception:  # noqa: BLE001 - unacknowledged: redelivered, and de-duplicated then
            logger.warning("could not acknowledge %d taken ingest messages; they will be redelivered", self.count)
            _reader.reset()


def _decode(message: Message) -> IngestBatch | None:
    if (message.headers or {}).get("task") != APPLY_EVENTS_TASK:
        return None
    args, _kwargs, _embed = loads(message.body)
    return ingest_batch_from_payload(args[0])


@contextmanager
def messages_taken(queue: str | None, max_messages: int, max_events: int) -> Iterator[TakenMessages]:
    """Take up to ``max_messages`` waiting ingest messages (stopping near ``max_events``)
    for the body of the ``with``; acknowledge them when it succeeds, requeue them when it
    raises."""
    taken = TakenMessages()
    if queue and max_messages > 0:
        _take(taken, queue, max_messages, max_events)
    try:
        yield taken
    except BaseException:
        taken.requeue()
        raise
    taken.ack()


def _take(taken: TakenMessages, queue: str, max_messages: int, max_events: int) -> None:
    events = 0
    try:
        channel = _reader.channel()
        taken._channel = channel
        while taken.count < max_messages and events < max_events:
            message = channel.basic_get(queue=queue, no_ack=False)
            if message is None:
                break
            tag = message.delivery_info["delivery_tag"]
            try:
                batch = _decode(message)
            except Exception:  # a malformed message goes to the dead-letter queue
                logger.exception("dead-lettering a malformed ingest message")
                channel.basic_reject(tag, False)
                continue
            if batch is None:
                channel.basic_reject(tag, True)
                break
            taken.batches.append(batch)
            taken._tags.append(tag)
            events += len(batch.events)
            if message.delivery_info.get("redelivered"):
                break
    except Exception as exc:  # noqa: BLE001 - the broker went away: apply what we hold
        logger.warning("taking queued ingest messages failed (%s); applying fewer", exc)
        _reader.reset()
        # What was taken on the broken channel returns to the queue by itself.
        taken.batches, taken._tags = [], []
