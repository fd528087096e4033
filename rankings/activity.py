"""Events per second per board, for the live page's chart.

One Redis counter per board and second (``INCRBY``), expiring after two minutes, so the
last minute is always there and nothing has to be trimmed. Reading a minute is one
pipelined round trip of 60 ``GET``s. The counts are a display aid, not a ledger: a
failed write is logged and forgotten, never retried.
"""

import logging
import time
from collections import Counter
from collections.abc import Iterable

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from rankings import redis_keys
from rankings.cache import redis_client
from tasks.messages import ScoreEvent

logger = logging.getLogger(__name__)

# Long enough to read a full minute back, short enough that idle boards cost nothing.
ACTIVITY_TTL_SECONDS = 120
ACTIVITY_WINDOW_SECONDS = 60


def activity_key(leaderboard_id: int, second: int) -> str:
    # Under the board's prefix (its hash tag): on its cluster slot, deleted with the board.
    return f"{redis_keys.board_prefix(leaderboard_id)}:activity:{second}"


def board_activity_record(client: Redis, leaderboard_id: int, events: int, now: float) -> None:
    """Count ``events`` for the board in the second ``now`` (epoch seconds) falls in."""
    boards_activity_record(client, {leaderboard_id: events}, now)


def boards_activity_record(client: Redis, events_by_board: dict[int, int], now: float) -> None:
    """Count each board's events in the second ``now`` falls in: one round trip for all."""
    pipe = client.pipeline(transaction=False)
    boards_activity_queue(pipe, events_by_board, now)
    pipe.execute()


def boards_activity_queue(pipe: Pipeline, events_by_board: dict[int, int], now: float) -> None:
    """The same counts as commands on a pipeline the caller sends (the ingest hand-off's)."""
    for leaderboard_id, events in events_by_board.items():
        key = activity_key(leaderboard_id, int(now))
        pipe.incrby(key, events)
        pipe.expire(key, ACTIVITY_TTL_SECONDS)


def board_activity_series(
    client: Redis, leaderboard_id: int, now: float, seconds: int = ACTIVITY_WINDOW_SECONDS
) -> list[tuple[int, int]]:
    """``(second, events)`` for the ``seconds`` whole seconds before ``now``, oldest first.

    The current second is left out: it is still filling, and would make the chart's last
    point dip on every poll.
    """
    last = int(now) - 1
    window = range(last - seconds + 1, last + 1)
    pipe = client.pipeline(transaction=False)
    for second in window:
        pipe.get(activity_key(leaderboard_id, second))
    return [(second, int(count or 0)) for second, count in zip(window, pipe.execute(), strict=True)]


def board_activity_record_batch(events: Iterable[ScoreEvent], now: float | None = None) -> None:
    """Count a batch's events per board; Redis being away only loses the display counts."""
    per_board = Counter(event.leaderboard_id for event in events)
    if not per_board:
        return
    try:
        boards_activity_record(redis_client(), dict(per_board), time.time() if now is None else now)
    except RedisError as exc:
        logger.warning("activity not counted: %s", exc)
