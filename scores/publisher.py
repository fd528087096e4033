"""One confirmed publish for many requests: the web tier's way onto the ingest queues.

Each web process runs one publisher thread. A request hands its events over and waits;
the thread takes every request waiting at that moment (up to ``max_events`` events),
publishes them as one persistent message and waits for the broker's confirm, then wakes
each request with its answer. Under load a publish carries many requests, and a request
waits at most for the publish in flight and its own: no timer adds latency when idle.

The number of messages a request costs is therefore at most one, whatever the number of
ingest partitions: a message goes to the partition of its first user (so a single-user
request keeps that user's events in one queue), and correctness never depends on which
queue a message lands in, because applying events does not depend on their order (see
``scores.services``) and row locks are taken in key order.
"""

import logging
import os
import queue
import threading
from dataclasses import dataclass, field

from django.conf import settings
from kombu.exceptions import OperationalError as BrokerOperationalError

from leaderboard_project.celery import app as celery_app
from scores.admission import backlog_count
from scores.partitioning import partition_of
from tasks.messages import ScoreEvent, ingest_batch_payload
from tasks.queues import APPLY_EVENTS_TASK, ingest_queue_name

logger = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not confirm the events in time; nothing may be promised to the client."""


_WAITING, _TAKEN, _ABANDONED = "waiting", "taken", "abandoned"


@dataclass(eq=False)
class _Request:
    events: list[ScoreEvent]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    state: str = _WAITING
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        """The publisher claims the request; False when its client already gave up."""
        with self.lock:
            if self.state == _ABANDONED:
                return False
            self.state = _TAKEN
            return True

    def abandon(self) -> bool:
        """The client gives up; False when the publisher already took it (it may still land)."""
        with self.lock:
            if self.state == _TAKEN:
                return False
            self.state = _ABANDONED
            return True


class IngestPublisher:
    def __init__(self, *, max_events: int) -> None:
        self.max_events = max_events
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self.publishes = 0  # messages sent by this process, read by the tests

    def publish(self, events: list[ScoreEvent]) -> None:
        """Return once the broker confirmed these events; raise BrokerUnavailable otherwise."""
        self._ensure_thread()
        request = _Request(events)
        self._requests.put(request)
        timeout = settings.LEADERBOARD_PUBLISH_CONFIRM_TIMEOUT
        if not request.done.wait(timeout):
            # Not taken yet: it never will be. Taken: it may still be confirmed, but a 503
            # promises nothing; a client that resends with event ids counts nothing twice.
            request.abandon()
            raise BrokerUnavailable(f"the broker did not confirm within {timeout} s")
        if request.error is not None:
            raise BrokerUnavailable(str(request.error)) from request.error

    def _ensure_thread(self) -> None:
        # One thread per process; a forked child (gunicorn worker) starts its own.
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid != os.getpid():
                self._requests = queue.SimpleQueue()
                threading.Thread(target=self._run, name="ingest-publisher", daemon=True).start()
                self._pid = os.getpid()

    def _next_group(self, carried: _Request | None) -> tuple[list[_Request], _Request | None]:
        group: list[_Request] = []
        size = 0
        candidate = carried or self._requests.get()
        while candidate is not None:
            if candidate.take():
                if group and size + len(candidate.events) > self.max_events:
                    return group, candidate
                group.append(candidate)
                size += len(candidate.events)
                if size >= self.max_events:
                    break
            try:
                candidate = self._requests.get_nowait()
            except queue.Empty:
                candidate = None
        return group, None

    def _run(self) -> None:
        carried: _Request | None = None
        while True:
            group, carried = self._next_group(carried)
            if group:
                self._send(group)

    def _send(self, group: list[_Request]) -> None:
        events = [event for request in group for event in request.events]
        partition = partition_of(events[0].user_id, settings.LEADERBOARD_INGEST_PARTITIONS)
        error: BaseException | None = None
        try:
            celery_app.send_task(
                APPLY_EVENTS_TASK,
                args=[ingest_batch_payload(events)],
                queue=ingest_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, partition),
                retry=True,
                # Without it Celery subscribes to the result in Redis on every publish.
                ignore_result=True,
            )
            self.publishes += 1
            backlog_count(published=len(events))
        except (BrokerOperationalError, OSError) as exc:
            error = exc
        except Exception as exc:  # a nack or a bug must reach the waiting requests, not kill the thread
            logger.exception("publish failed")
            error = exc
        for request in group:
            request.error = error
            request.done.set()


_publisher: IngestPublisher | None = None


def ingest_publisher() -> IngestPublisher:
    global _publisher
    if _publisher is None:
        _publisher = IngestPublisher(max_events=settings.LEADERBOARD_PUBLISH_MAX_EVENTS)
    return _publisher
