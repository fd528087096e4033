"""Admission control: shed load at the door when the ingest backlog is past its bound.

The web tier accepts batched events several times faster than the workers apply them,
so under a sustained overload the queues (and freshness) would grow without bound. The
backlog in events is two Redis counters: events published (each web process adds its
confirmed messages' events at each reading, see ``PublishTally``) less events applied
(the ingest workers add each committed transaction's). Each web process runs one monitor
thread that reads them, with the ingest queues' depths, every
``LEADERBOARD_ADMISSION_CHECK_SECONDS``; once the pipeline is idle (no ready message and
nothing applied for a second) the counters are set level again, so a dead-lettered
message never applied does not drift the figure for long, and a redelivery applied twice
is levelled at once. Past ``LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS`` a score request
answers 503 with ``Retry-After`` before anything is published: a 503 promises nothing and
enqueues nothing, so a client that resends with event ids loses nothing.

Fair share: past half the bound, a key that sent half again more than an equal split of the
last second's events gets 429 instead, so one flooding key is held back before everybody
is refused.

A reading older than a few intervals (the broker unreachable) admits: the publish itself
then fails and answers 503.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from leaderboard_project.celery import app as celery_app
from rankings.cache import redis_client, run_script
from tasks.queues import ingest_queue_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    messages: int
    events: int
    read_at: float  # time.monotonic()


def _counter_key(name: str) -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:backlog:{name}"


def backlog_applied_queue(pipe: Pipeline, applied: int) -> None:
    """Count committed events (a worker), as a command on the hand-off's pipeline."""
    pipe.incrby(_counter_key("applied"), applied)


class PublishTally:
    """What this web process published and the broker confirmed, counted in memory and
    added to the shared counters (events: ``published``; messages: ``messages``) once per
    reading of the monitor, not once per message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events = 0
        self._messages = 0

    def add(self, *, events: int, messages: int) -> None:
        with self._lock:
            self._events += events
            self._messages += messages

    def flush(self, client: Redis) -> None:
        with self._lock:
            events, messages, self._events, self._messages = self._events, self._messages, 0, 0
        if not messages:
            return
        try:
            with client.pipeline(transaction=False) as pipe:
                pipe.incrby(_counter_key("published"), events)
                pipe.incrby(_counter_key("messages"), messages)
                pipe.execute()
        except RedisError as exc:
            self.add(events=events, messages=messages)  # counted at the next reading
            logger.warning("publish counters not updated: %s", exc)


publish_tally = PublishTally()


def backlog_in_flight() -> int:
    """Events published and not yet applied, by the counters (0 when Redis cannot tell:
    the caller then relies on its own grace)."""
    try:
        published, applied = redis_client().mget([_counter_key("published"), _counter_key("applied")])
    except RedisError as exc:
        logger.warning("backlog counters not read: %s", exc)
        return 0
    return int(published or 0) - int(applied or 0)


# KEYS: published, applied. ARGV: "level" to set published to applied (the pipeline is
# idle). A published count below the applied one (a redelivery applied twice) is levelled
# at once. Returns {backlog, applied}.
_READ_COUNTERS = """
local applied = tonumber(redis.call('GET', KEYS[2]) or '0')
local published = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] == 'level' or published < applied then
  redis.call('SET', KEYS[1], applied)
  published = applied
end
return {published - applied, applied}
"""

# Readings in a row with no ready message and no event applied: then nothing is in
# flight either, and whatever the counters still say (a dead-lettered message never
# applied) is drift.
_IDLE_READINGS = 4


class BacklogMonitor:
    def __init__(self) -> None:
        self._pid: int | None = None
        self._lock = threading.Lock()
        self.latest: Backlog | None = None

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
        connection = None
        idle, last_applied = 0, None
        while True:
            try:
                if connection is None:
                    connection = celery_app.connection_for_read(heartbeat=0)
                channel = connection.default_channel
                # Named at each reading: settings are read where they are used (the tests
                # change the prefix and partitions per test; a thread outlives a test).
                names = {
                    ingest_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, n)
                    for n in range(settings.LEADERBOARD_INGEST_PARTITIONS)
                }
                queues = [queue for queue in settings.CELERY_TASK_QUEUES if queue.name in names]
                # Declared as the workers declare them (idempotent): a queue nobody has
                # published to yet exists, empty, instead of failing the reading.
                messages = sum(queue.bind(channel).queue_declare().message_count for queue in queues)
                # This process's publishes first, so its own reading counts them.
                publish_tally.flush(redis_client())
                counters = [_counter_key("published"), _counter_key("applied")]
                # Level only if still idle now: a burst that arrived since the last reading counts.
                level = "level" if messages == 0 and idle >= _IDLE_READINGS else ""
                events, applied = run_script(redis_client(), _READ_COUNTERS, counters, [level])
                idle = idle + 1 if messages == 0 and applied == last_applied else 0
                last_applied = applied
                self.latest = Backlog(messages, int(events), time.monotonic())
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


# KEYS: this second's per-key hash, last second's per-key hash. ARGV: key id, events,
# ttl ms. Counts the request's events for its key in this second and returns
# {key's events last second, all events last second, keys active last second}.
_FAIR_SHARE = """
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local total, keys = 0, 0
for _, count in ipairs(redis.call('HVALS', KEYS[2])) do
  total = total + tonumber(count)
  keys = keys + 1
end
return {mine, total, keys}
"""


_FAIR_SHARE_FACTOR = 1.5


def _share_key(second: int) -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:fair-share:{second}"


def fair_share_exceeded(client: Redis, *, key_id: int, events: int, second: int) -> bool:
    """Under pressure, whether this key took more than its share of the last second.

    The share is half again an equal split among the keys that wrote in the last second,
    so a key sending no more than the others is never refused, while one flooding key is
    held back (429) before admission control has to refuse everybody (503)."""
    mine, total, keys = run_script(
        client, _FAIR_SHARE, [_share_key(second), _share_key(second - 1)], [key_id, events, 3000]
    )
    return keys > 1 and mine > _FAIR_SHARE_FACTOR * total / keys


def admission_in_memory() -> bool:
    """Whether ``admission_check`` answers from the monitor's reading alone: the fair share
    (a Redis script) is only consulted between half the bound and the bound."""
    backlog = backlog_monitor.backlog()
    bound = settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS
    return backlog is None or not bound / 2 < backlog.events <= bound


def admission_check(*, key_id: int | None, events: int) -> str | None:
    """None to admit; "overloaded" past the bound; "over share" for a key that takes more
    than its share while the backlog is past half the bound."""
    backlog = backlog_monitor.backlog()
    if backlog is None:
        return None
    bound = settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS
    if backlog.events > bound:
        return "overloaded"
    if key_id is None or backlog.events <= bound / 2:
        return None
    try:
        exceeded = fair_share_exceeded(redis_client(), key_id=key_id, events=events, second=int(time.time()))
    except RedisError as exc:
        logger.warning("fair share not checked, Redis failed: %s", exc)
        return None
    return "over share" if exceeded else None
