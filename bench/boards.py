"""Boards and keys of a run, made through the service's own functions (as the reseed command does)."""

import time
from typing import Any

from bench.config import BenchConfig


def board_make(slug: str, **fields: Any) -> Any:
    from rankings.services import leaderboard_create

    return leaderboard_create(slug=slug, name=slug.title(), **fields)


def board_seed(slug: str, users: int, cfg: BenchConfig) -> tuple[Any, dict[str, float]]:
    """A board of ``users`` synthetic users with its top-N and complete rank index, and the seconds each step took."""
    from rankings import cache
    from rankings.services import index_rebuild, topn_rebuild
    from scores.seeding import scores_replace, synthetic_scores

    board = board_make(slug)
    period = board.current_period()
    steps: dict[str, float] = {}
    started = time.monotonic()
    scores_replace(leaderboard=board, rows=synthetic_scores(users, seed=cfg.seed), chunk=50_000)
    steps["scores_s"] = time.monotonic() - started
    cache.index_reset(cache.redis_client(), board.id, period)
    started = time.monotonic()
    topn_rebuild(leaderboard=board, period=period)
    steps["topn_rebuild_s"] = time.monotonic() - started
    started = time.monotonic()
    if not index_rebuild(leaderboard=board, period=period):
        raise RuntimeError(f"rank index of {slug} was not rebuilt")
    steps["index_rebuild_s"] = time.monotonic() - started
    return board, steps


def statistics_refresh() -> float:
    """ANALYZE the score table after bulk seeding, as autovacuum would in production; the seconds it took.

    Without it (this machine's PostgreSQL runs with autovacuum off) the planner believes a
    seeded board has a handful of rows and scans the whole board for a few users.
    """
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE scores_score")
        cursor.execute("ANALYZE scores_processedevent")
    return time.monotonic() - started


def write_key() -> str:
    from scores.models import ApiKey

    return ApiKey.generate(name="bench")[1]
