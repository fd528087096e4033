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

Fair share per tenant (``ApiKey.admission_tenant``: keys of one tenant count together, so
a flood spread over several keys is one flood): past half the bound a tenant over its
share of the last second gets 429, and past the bound only tenants at or over an equal
split are refused, up to a hard bound past which everybody is (``admission_check``).

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
    # One hash tag for the counters: the script reading them runs on one cluster slot.
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:{{backlog}}:{name}"


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


# KEYS: this second's per-tenant hash, last second's. ARGV: tenant, events, ttl ms.
# Counts the request's events for its tenant in this second (refused ones too: a tenant
# that keeps flooding stays over its share) and returns {tenant's events last second,
# all events last second, tenants active last second counting the asker}.
_FAIR_SHARE = """
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local total, tenants = 0, 0
for _, count in ipairs(redis.call('HVALS', KEYS[2])) do
  total = total + tonumber(count)
  tenants = tenants + 1
end
if mine == 0 then tenants = tenants + 1 end
return {mine, total, tenants}
"""


_FAIR_SHARE_FACTOR = 1.5


def _share_key(second: int) -> str:
    # One hash tag for every second: the script reads two seconds on one cluster slot.
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:{{fair-share}}:{second}"


@dataclass(frozen=True)
class TenantShare:
    """A tenant's events in the last second against everybody's."""

    mine: int
    total: int
    tenants: int  # active in the last second, the asker included

    @property
    def equal_split(self) -> float:
        return self.total / self.tenants

    def over_fair_share(self) -> bool:
        # Alone, a tenant's split is all there is: only past the bound is it held back.
        return self.tenants > 1 and self.mine > _FAIR_SHARE_FACTOR * self.equal_split

    def at_or_over_split(self) -> bool:
        return self.mine > 0 and self.mine >= self.equal_split


def tenant_share(client: Redis, *, tenant: str, events: int, second: int) -> TenantShare:
    """Count this request for its tenant in ``second``; the tenant's share of the one before."""
    mine, total, tenants = run_script(
        client, _FAIR_SHARE, [_share_key(second), _share_key(second - 1)], [tenant, events, 3000]
    )
    return TenantShare(int(mine), int(total), int(tenants))


def _hard_bound() -> int:
    bound = settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS
    return settings.LEADERBOARD_ADMISSION_HARD_BACKLOG_EVENTS or 2 * bound


def admission_sheds_everyone() -> bool:
    """Whether the backlog is past the hard bound, where every score request is refused
    whatever it holds: the callers refuse before they parse the body (from memory, no I/O),
    so that overload does not spend the web tier's CPU on bodies it would not take."""
    backlog = backlog_monitor.backlog()
    return backlog is not None and backlog.events > _hard_bound()


def admission_in_memory() -> bool:
    """Whether ``admission_check`` answers from the monitor's reading alone: the tenant's
    share (a Redis script) is only consulted between half the bound and the hard bound."""
    backlog = backlog_monitor.backlog()
    bound = settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS
    return backlog is None or not bound / 2 < backlog.events <= _hard_bound()


def admission_check(*, tenant: str | None, events: int) -> str | None:
    """None to admit, "over share" (429) or "overloaded" (503); the rule, by backlog:

    - up to half the bound: everyone is admitted;
    - up to the bound: a tenant that sent more than half again an equal split of the
      last second's events (among the tenants active then, itself included) gets 429;
    - up to the hard bound (``LEADERBOARD_ADMISSION_HARD_BACKLOG_EVENTS``, twice the
      bound by default): a tenant that sent at least an equal split gets 503, so a
      flood, even from a tenant alone or spread over several keys, is refused while a
      lighter tenant (a new one included) still gets in;
    - past the hard bound: everyone gets 503.
    """
    backlog = backlog_monitor.backlog()
    if backlog is None:
        return None
    bound = settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS
    if backlog.events > _hard_bound():
        return "overloaded"
    if backlog.events <= bound / 2:
        return None
    past_bound = backlog.events > bound
    if tenant is None:
        return "overloaded" if past_bound else None
    try:
        share = tenant_share(redis_client(), tenant=tenant, events=events, second=int(time.time()))
    except RedisError as exc:
        logger.warning("fair share not checked, Redis failed: %s", exc)
        return "overloaded" if past_bound else None
    if past_bound:
        return "overloaded" if share.at_or_over_split() else None
    return "over share" if share.over_fair_share() else None
