"""Readiness: database, Redis and broker answer, and every ingest partition has a consumer."""

from dataclasses import dataclass, field

from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from operations.broker import BROKER_ERRORS, broker_connection, ingest_queue_names, queue_stats
from rankings.cache import redis_client


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, outcome in self.checks.items() if outcome != "ok"]

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
        return f"error: {exc}".strip()


def _redis() -> str:
    try:
        redis_client().ping()
        return "ok"
    except RedisError as exc:
        return f"error: {exc}"


def _broker() -> str:
    try:
        with broker_connection():
            return "ok"
    except BROKER_ERRORS as exc:
        return f"error: {exc or type(exc).__name__}"


def readiness_check() -> Readiness:
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
