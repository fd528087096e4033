"""One Redis counter that moves whenever a board is created, changed or deleted.

Web and worker processes keep boards in a per-process memo (``rankings.selectors``);
they re-read this counter at most once per ``LEADERBOARD_BOARD_MEMO_CHECK_SECONDS`` and
drop their copies when it moved. Without it, a board deleted and made again under its
slug would be served (and its events queued, 202) under the old id for the memo's TTL.
"""

import logging

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from rankings.cache import redis_client

logger = logging.getLogger(__name__)


def boards_version_key() -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:boards:version"


def boards_version_read() -> bytes | None:
    """The current version (None until the first change, or after a flush: both differ
    from any bumped value, so a flush also drops every memo)."""
    return redis_client().get(boards_version_key())


def boards_version_bump() -> None:
    try:
        redis_client().incr(boards_version_key())
    except RedisError as exc:
        # Readers that cannot reach Redis drop their copies anyway; the others see the
        # change when their memo expires.
        logger.warning("boards version not bumped (Redis: %s); other processes see the change within 30 s", exc)


def boards_version_bump_on_commit() -> None:
    # After the commit: a process that sees the new version must find the new rows.
    transaction.on_commit(boards_version_bump)
