"""What "the pipeline has drained and every read agrees with the database" means, as code."""

import json
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from rankings import cache
from rankings.models import Leaderboard, TopN
from rankings.selectors import db_top_rows, leaderboard_top, leaderboard_user_rank
from scores.models import Score
from tasks.queues import QueueRole, all_queue_names, role_queue_name


def eventually(check: Callable[[], Any], timeout: float = 90.0, interval: float = 0.25) -> Any:
    """Run ``check`` until it stops raising AssertionError; re-raise the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def queued_messages() -> int:
    """Ready messages on the test queues (0 once the workers have taken everything)."""
    names = set(all_queue_names(settings.LEADERBOARD_QUEUE_PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS))
    total = 0
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        # Declared as the workers declare them: a queue nobody used yet counts as empty.
        for queue in settings.CELERY_TASK_QUEUES:
            if queue.name in names:
                total += queue.bind(channel).queue_declare().message_count
    return total


def dead_letters() -> int:
    """Messages on the dead-letter queue."""
    dead = role_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, QueueRole.DEAD)
    queue = next(q for q in settings.CELERY_TASK_QUEUES if q.name == dead)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        # Declared as the workers declare it: a worker that answers pings may not have
        # declared it yet (its worker_ready handler does), and a passive check would fail.
        return queue.bind(conn.channel()).queue_declare().message_count


def db_scores(board: Leaderboard) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, score FROM scores_score WHERE leaderboard_id = %s AND period = %s",
            [board.id, board.current_period()],
        )
        return dict(cursor.fetchall())


def db_top(board: Leaderboard, limit: int | None = None) -> list[tuple[str, int]]:
    rows = db_top_rows(leaderboard=board, period=board.current_period(), limit=limit or board.top_n)
    return [(row.user_id, row.score) for row in rows]


def assert_top_consistent(board: Leaderboard) -> None:
    """The top-N in Redis and in the admin table equal the database's ordered query."""
    truth = db_top(board)
    strategy = settings.LEADERBOARD_RANKING_STRATEGY
    served = leaderboard_top(leaderboard=board, limit=board.top_n, strategy=strategy)
    assert [(e["user_id"], e["score"]) for e in served.entries] == truth, "served top-N differs from the database"
    client = cache.redis_client()
    period = board.current_period()
    if strategy == "sorted_set":
        head = cache.index_head(client, board.id, period, board.top_n)
        assert head is not None, "rank index not complete"
        from rankings.ordering import parse_member

        redis_pairs = [parse_member(m, board.order == "desc")[:2] for m in head]
    else:
        cached = cache.top_read(client, board.id, period)
        assert cached is not None, "no top-N in Redis"
        redis_pairs = [(e["user_id"], e["score"]) for e in map(json.loads, cached.entries)]
    assert redis_pairs == truth, "Redis top-N differs from the database"
    table = TopN.objects.get(leaderboard=board, period=period)
    assert [(row[0], row[1]) for row in table.entries] == truth, "admin top-N table differs from the database"


def assert_ranks_consistent(board: Leaderboard, user_ids: list[str], around: int = 2) -> None:
    """Each user's served rank, score, total and neighbours equal the database's order."""
    everyone = db_top(board, limit=10**7)
    position = {user: i for i, (user, _) in enumerate(everyone)}
    for user_id in user_ids:
        view = leaderboard_user_rank(leaderboard=board, user_id=user_id, around=around)
        assert view is not None, f"{user_id} not found"
        i = position[user_id]
        assert (view.rank, view.score, view.total) == (i + 1, everyone[i][1], len(everyone)), user_id
        lo = max(0, i - around)
        expected = [(lo + 1 + k, u, s) for k, (u, s) in enumerate(everyone[lo : i + around + 1])]
        assert [(e["rank"], e["user_id"], e["score"]) for e in view.around] == expected, user_id


def make_score(board: Leaderboard, user_id: str, score: int) -> Score:
    """A score row written straight to the table (no pipeline), for admin and read tests."""
    return Score.objects.create(
        user_id=user_id,
        leaderboard=board,
        period=board.current_period(),
        score=score,
        sort_key=board.sort_key_of(score),
        reached_at=timezone.now(),
    )


def broker_connections_renew() -> None:
    """After a broker restart: drop the test process's pooled Celery connections, dead
    with the broker. Nothing in this process publishes through Celery's pool any more (the
    web tier's publisher has its own connection), which used to revive them; a later
    ``control.ping`` or ``purge`` would meet a reset connection."""
    from kombu import pools

    from leaderboard_project.celery import app as celery_app

    # kombu's pools are process-wide: reset them, and Celery's handle on its own, so the
    # next use opens new ones (closing a pool's connections in place leaves it waiting for
    # connections that never come back).
    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
