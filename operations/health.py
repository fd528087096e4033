"""Readiness of a web process: what it cannot serve without, and what only degrades it.

The rule: ready (200) while the database and the broker answer. Every read and every
key or board lookup past its memo needs the database; every write needs the broker
(without it each score request answers 503). Redis and the ingest consumers only degrade
the service: reads fall back to the database and the throttle lets requests by while
Redis is away; writes wait in the queues (admission sheds past its bound) while no
worker consumes a partition. Those are reported in ``degraded`` with a 200, so a web pod
does not leave the load balancer, or a stack stay unready, for a part that is not its own.
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


# The checks whose failure makes the process unready; any other only degrades it.
CRITICAL_CHECKS = ("database", "broker")


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """Critical checks that failed: the process is not ready."""
        return [name for name, outcome in self.checks.items() if outcome != "ok" and name in CRITICAL_CHECKS]

    @property
    def degraded(self) -> list[str]:
        """Other checks that failed: ready, with a part of the service slower or waiting."""
        return [name for name, outcome in self.checks.items() if outcome != "ok" and name not in CRITICAL_CHECKS]

    @property
    def ready(self) -> bool:
        return not self.failed


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
