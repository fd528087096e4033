"""Bulk-loading scores for demos and benchmarks: fixtures or synthetic users."""

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from rankings.models import Leaderboard
from scores.models import ProcessedEvent, Score

_INSERT_SQL = """
    INSERT INTO scores_score (user_id, leaderboard_id, period, score, sort_key, reached_at, version)
    SELECT t.u, %(board)s, %(period)s, t.s, CASE WHEN %(desc)s THEN -t.s ELSE t.s END,
           %(now)s - t.age * interval '1 microsecond', 1
    FROM unnest(%(users)s::text[], %(scores)s::bigint[], %(ages)s::bigint[]) AS t(u, s, age)
"""


def synthetic_scores(count: int, seed: int = 1) -> Iterator[tuple[str, int]]:
    """Users with a long-tailed score distribution, as real boards have."""
    rng = random.Random(seed)
    for n in range(count):
        yield f"user-{n:08d}", int(rng.paretovariate(1.2) * 100)


def fixture_scores(path: Path) -> tuple[dict, list[tuple[str, int]]]:
    data = json.loads(path.read_text())
    return data.get("leaderboard", {}), [(row["user_id"], int(row["score"])) for row in data["scores"]]


def scores_replace(
    *,
    leaderboard: Leaderboard,
    rows: Iterator[tuple[str, int]],
    chunk: int = 10_000,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Replace a board's scores with ``rows``; the caller rebuilds its top-N and index."""
    period = leaderboard.current_period()
    now = timezone.now()
    total = 0
    with transaction.atomic():
        Score.objects.filter(leaderboard=leaderboard, period=period).delete()
        ProcessedEvent.objects.filter(leaderboard=leaderboard).delete()
        batch: list[tuple[str, int]] = []
        with connection.cursor() as cursor:

            def flush() -> None:
                cursor.execute(
                    _INSERT_SQL,
                    {
                        "board": leaderboard.id,
                        "period": period,
                        "desc": leaderboard.order == "desc",
                        "now": now,
                        "users": [u for u, _ in batch],
                        "scores": [s for _, s in batch],
                        # Distinct reached_at per row keeps ties meaningful in seeded data.
                        "ages": [total - len(batch) + i for i in range(len(batch))],
                    },
                )
                progress(len(batch))

            for row in rows:
                batch.append(row)
                total += 1
                if len(batch) >= chunk:
                    flush()
                    batch = []
            if batch:
                flush()
    with connection.cursor() as cursor:
        # Fresh statistics, or the planner guesses the board is tiny and scans all of it
        # for a handful of users (autovacuum may be off, or not there yet).
        cursor.execute("ANALYZE scores_score")
    return total
