"""Admission control: shed load at the door when the ingest backlog is past its bound.

The web tier accepts batched events several times faster than the workers apply them,
so under a sustained overload the queues (and freshness) would grow without bound. Each
web process runs one monitor thread that reads the ingest queues' depths every
``LEADERBOARD_ADMISSION_CHECK_SECONDS`` (a passive ``queue_declare`` per partition: no
message is touched) and estimates the backlog in events from the events per message this
process has been publishing. Past ``LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS`` a score
request answers 503 with ``Retry-After`` before anything is published: a 503 promises
nothing and enqueues nothing, so a client that resends with event ids loses nothing.

A reading older than a few intervals (the broker unreachable) admits: the publish itself
then fails and answers 503.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from leaderboard_project.celery import app as celery_app
from tasks.queues import ingest_queue_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    messages: int
    events: int
    read_at: float  # time.monotonic()


class BacklogMonitor:
    def __init__(self) -> None:
        self._pid: int | None = None
        self._lock = threading.Lock()
        self.latest: Backlog | None = None
        # Events per published message, averaged (EWMA) over this process's publishes.
        self._events_per_message = 1.0

    def published(self, events: int) -> None:
        self._events_per_message += 0.1 * (events - self._events_per_message)

    def backlog(self) -> Backlog | None:
        self._ensure_thread()
        latest = self.latest
        stale = 4 * settings.LEADERBOARD_ADMISSION_CHECK_SECONDS
        if latest is None or time.monotonic() - latest.read_at > stale:
            return None
        return latest

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self.latest = None
                threading.Thread(target=self._run, name="backlog-monitor", daemon=True).start()
                self._pid = os.getpid()

    def _run(self) -> None:
        names = {
            ingest_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, n)
            for n in range(settings.LEADERBOARD_INGEST_PARTITIONS)
        }
        queues = [queue for queue in settings.CELERY_TASK_QUEUES if queue.name in names]
        connection = None
        while True:
            try:
                if connection is None:
                    connection = celery_app.connection_for_read(heartbeat=0)
                channel = connection.default_channel
                # Declared as the workers declare them (idempotent): a queue nobody has
                # published to yet exists, empty, instead of failing the reading.
                messages = sum(queue.bind(channel).queue_declare().message_count for queue in queues)
                events = round(messages * self._events_per_message)
                self.latest = Backlog(messages, events, time.monotonic())
            except Exception as exc:  # noqa: BLE001 - the broker or a queue is away: no reading, admit
                logger.debug("backlog not read: %s", exc)
                if connection is not None:
                    try:
                        connection.release()
                    except Exception:  # a broken connection may fail to close; it is dropped anyway
                        logger.debug("closing the monitor's connection failed", exc_info=True)
                connection = None
            time.sleep(settings.LEADERBOARD_ADMISSION_CHECK_SECONDS)


backlog_monitor = BacklogMonitor()


def admission_refusal() -> Backlog | None:
    """The backlog when it is past the bound (the request must be shed), else None."""
    backlog = backlog_monitor.backlog()
    if backlog is not None and backlog.events > settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS:
        return backlog
    return None
