"""The naive design as a baseline: one Celery task per event, one single-row upsert each."""

from celery import shared_task
from django.db import connection
from django.utils import timezone

NAIVE_TASK = "bench.naive_increment"

_UPSERT_ONE = """
    INSERT INTO scores_score AS s (user_id, leaderboard_id, period, score, sort_key, reached_at, version)
    VALUES (%(user)s, %(board)s, 'all', %(points)s, -%(points)s, %(now)s, 1)
    ON CONFLICT (user_id, leaderboard_id, period) DO UPDATE SET
        score = s.score + EXCLUDED.score,
        sort_key = s.sort_key - EXCLUDED.score,
        reached_at = EXCLUDED.reached_at,
        version = s.version + 1
"""


@shared_task(name=NAIVE_TASK, ignore_result=True)
def naive_increment(board_id: int, user_id: str, points: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_ONE, {"user": user_id, "board": board_id, "points": points, "now": timezone.now()})
