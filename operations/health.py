"""Readiness, two ways.

``/readyz`` is the stack's (the contract, DESIGN.md): 200 only when the database, Redis
and the broker answer and every ingest partition has a consumer; else 503 naming what
failed. Compose gates on it: a stack is ready when everything is.

``/readyz/web`` is a web process's, for the load balancer or a kubelet in front of web
pods: 200 while the database and the broker answer, which the process cannot serve
without (every read and every key or board lookup past its memo needs the database,
every write needs the broker). Redis and the ingest consumers only degrade it: reads fall
back to the database and the throttle lets requests by while Redis is away, and writes
wait in the queues (admission sheds past its bound) while no worker consumes a
partition. Those are listed under ``degraded`` with a 200, so a pod does not leave the
pool for a part that is not its own, and would be missing from every pod alike.
"""

import logging
from dataclasses import dataclass, field

from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from leaderboard_project.memo import MISSING, TtlMemo
from operations.broker import BROKER_ERRORS, broker_connection, ingest_queue_names, queue_stats
from rankings.cache import redis_client

logger = logging.getLogger(__name__)

# One check a second per process, whatever the probe rate: each opens broker connections,
# and /readyz answers anyone.
_recent = TtlMemo(ttl_seconds=1.0, max_entries=1)


# What a web process cannot serve without; any other failed check only degrades it.
WEB_CRITICAL_CHECKS = ("database", "broker")


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, outcome in self.checks.items() if outcome != "ok"]

    @property
    def ready(self) -> bool:
        """The stack's readiness: every check answered."""
        return not self.failed

    @property
    def web_failed(self) -> list[str]:
        return [name for name in self.failed if name in WEB_CRITICAL_CHECKS]

    @property
    def degraded(self) -> list[str]:
        """Failed checks a web process serves without (slower reads, writes waiting)."""
        return [name for name in self.failed if name not in WEB_CRITICAL_CHECKS]

    @property
    def web_ready(self) -> bool:
        return not self.web_failed


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as exc:
        connection.close()  # a broken connection must not be reused by the next request
        return _failed("database", exc)


def _redis() -> str:
    try:
        redis_client().ping()
        return "ok"
    except RedisError as exc:
        return _failed("redis", exc)


def _broker() -> str:
    try:
        with broker_connection():
            return "ok"
    except BROKER_ERRORS as exc:
        return _failed("broker", exc)


def _failed(check: str, exc: BaseException) -> str:
    # The text (hosts, ports, users) goes to the log; the probe's answer names the kind.
    logger.warning("readiness: %s check failed: %s", check, exc)
    return f"error: {type(exc).__name__}"


def readiness_check() -> Readiness:
    """The stores' and the consumers' state, checked at most once a second per process."""
    readiness = _recent.get("readiness")
    if readiness is MISSING:
        readiness = _readiness_now()
        _recent.put("readiness", readiness)
    return readiness


def readiness_forget() -> None:
    _recent.clear()


def _readiness_now() -> Readiness:
    readiness = Readiness()
    readiness.checks["database"] = _database()
    readiness.checks["redis"] = _redis()
    readiness.checks["broker"] = _broker()
    if readiness.checks["broker"] == "ok":
        for name, stats in queue_stats(ingest_queue_names()).items():
            if stats is None:
                readiness.checks[f"consumer:{name}"] = "queue missing"
            else:
                readiness.checks[f"consumer:{name}"] = "ok" if stats.consumers else "no consumer"
    return readiness
