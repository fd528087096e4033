"""When the reconcile last finished, kept in Redis for the admin's pipeline page."""

from datetime import UTC, datetime

from django.conf import settings
from redis import Redis


def _last_reconcile_key() -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:ops:last-reconcile"


def reconcile_mark(client: Redis, now: datetime, boards: int) -> None:
    """Record a finished reconcile (the beat task calls this after ``reconcile_all``)."""
    client.hset(_last_reconcile_key(), mapping={"at": now.timestamp(), "boards": boards})


def reconcile_last(client: Redis) -> tuple[datetime, int] | None:
    """When the last reconcile finished and how many boards it checked; None if never."""
    stored = client.hgetall(_last_reconcile_key())
    if not stored:
        return None
    return datetime.fromtimestamp(float(stored[b"at"]), tz=UTC), int(stored[b"boards"])
