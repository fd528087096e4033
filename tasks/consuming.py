"""More messages for one ingest transaction: when a queue backs up, take what waits.

Celery hands a task one message. When messages queue up, applying each in a transaction
of its own costs a commit and a hand-off per message; instead the ingest task takes up
to N more ingest messages waiting on its queue (``basic_get``, unacknowledged), applies
all of them in its one transaction, and acknowledges them only after the commit. If the
process dies at any point, the broker redelivers the unacknowledged messages, and their
event ids make a second application a no-op. With an empty queue nothing is taken.

A failed transaction spends none of the taken messages' deliveries. The ingest queues
dead-letter a message after a number of returns (their delivery limit, meant for a
message that kills its worker every time), so the taken messages are never rejected
back: each is acknowledged, dead-lettered (it is itself the poison), or given back as a
fresh copy that starts with no delivery counted (``give_back``). Only a worker's death
returns them, and a redelivered message is kept apart (a task whose own message is a
redelivery takes nothing more, and a redelivered message ends the taking), so an
innocent message batched with a poison that kills is returned at most once before it
runs alone or last.
"""

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from amqp import Message
from kombu import Connection
from kombu.utils.json import loads

from leaderboard_project.celery import app as celery_app
from tasks.messages import IngestBatch, ScoreEvent, ingest_batch_from_payload
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
        """Drop the connection: whatever it holds unacknowledged returns to its queue."""
        if self._connection is not None and self._pid == os.getpid():
            try:
                self._connection.release()
            except Exception:  # a broken connection may fail to close; it is dropped anyway
                logger.debug("closing a broken reader connection failed", exc_info=True)
        self._connection = None


_reader = _QueueReader()


@dataclass(frozen=True)
class TakenMessage:
    batch: IngestBatch
    delivery_tag: int
    message: Message

    @property
    def redelivered(self) -> bool:
        return bool(self.message.delivery_info.get("redelivered"))


@dataclass
class TakenMessages:
    """Messages taken off ``queue``, unacknowledged until settled one way or another."""

    queue: str | None = None
    messages: list[TakenMessage] = field(default_factory=list)
    _channel: Any = None

    @property
    def count(self) -> int:
        return len(self.messages)

    @property
    def events(self) -> list[ScoreEvent]:
        return [event for taken in self.messages for event in taken.batch.events]

    @property
    def redelivered(self) -> bool:
        return any(taken.redelivered for taken in self.messages)

    def ack(self) -> None:
        """All of them were applied."""
        if self.messages:
            self._settle(lambda: self._channel.basic_ack(self.messages[-1].delivery_tag, multiple=True))
        self.messages = []

    def ack_one(self, taken: TakenMessage) -> None:
        self._settle(lambda: self._channel.basic_ack(taken.delivery_tag))

    def dead_letter_one(self, taken: TakenMessage) -> None:
        """This one failed alone, for good: it is the poison."""
        self._settle(lambda: self._channel.basic_reject(taken.delivery_tag, False))

    def give_back(self, taken: list[TakenMessage], delay_s: float) -> None:
        """Put fresh copies on the queue, to run in ``delay_s`` as Celery's retries do
        (``eta`` and ``retries`` in the headers), then acknowledge the originals. A crash
        between the two leaves both queued; their event ids make the second a no-op."""

        def republish() -> None:
            for one in taken:
                copy = _retry_copy(one.message, delay_s)
                self._channel.basic_publish_confirm(copy, exchange="", routing_key=self.queue)
            for one in taken:
                self._channel.basic_ack(one.delivery_tag)

        if taken:
            self._settle(republish)

    def give_back_all(self, delay_s: float) -> None:
        self.give_back(self.messages, delay_s)
        self.messages = []

    def _settle(self, action: Any) -> None:
        try:
            action()
        except Exception:  # the broker went away, or refused the copies
            # Nothing is lost: dropping the connection returns every unacknowledged
            # message to its queue (this once, each counts a delivery).
            logger.warning("settling taken ingest messages failed; the broker returns them", exc_info=True)
            _reader.reset()


def _retry_copy(message: Message, delay_s: float) -> Message:
    properties = dict(message.properties)
    headers = dict(properties.get("application_headers") or {})
    headers.pop("x-delivery-count", None)  # the broker's, for the original
    headers["retries"] = int(headers.get("retries") or 0) + 1
    headers["eta"] = (datetime.now(UTC) + timedelta(seconds=delay_s)).isoformat()
    properties["application_headers"] = headers
    return Message(message.body, **properties)


def _decode(message: Message) -> IngestBatch | None:
    if (message.headers or {}).get("task") != APPLY_EVENTS_TASK:
        return None
    args, _kwargs, _embed = loads(message.body)
    return ingest_batch_from_payload(args[0])


def messages_take(queue: str | None, max_messages: int, max_events: int) -> TakenMessages:
    """Take up to ``max_messages`` waiting ingest messages (stopping near ``max_events``).
    The caller settles every one of them: ``ack``, ``dead_letter_one`` or ``give_back``."""
    taken = TakenMessages(queue=queue)
    if not queue or max_messages <= 0:
        return taken
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
            taken.messages.append(TakenMessage(batch, tag, message))
            events += len(batch.events)
            if taken.messages[-1].redelivered:
                break
    except Exception as exc:  # noqa: BLE001 - the broker went away: apply what we hold
        logger.warning("taking queued ingest messages failed (%s); applying fewer", exc)
        _reader.reset()
        # What was taken on the broken channel returns to the queue by itself.
        taken.messages = []
    return taken


def messages_abandon() -> None:
    """Something unforeseen left taken messages unsettled: return them to the queue."""
    _reader.reset()
