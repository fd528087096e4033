"""Baselines measured in the same run: the store's own limit, Redis's, and the naive one-task-per-event design."""

import threading
import time
from typing import Any

import numpy as np
import psycopg

from bench.config import DB_NAME, PREFIX, BenchConfig
from bench.store import board_sum, conninfo, wait_for_sum
from bench.workload import USER_FORMAT

_CREATE_RAW = "CREATE TABLE IF NOT EXISTS bench_raw_scores (user_id text PRIMARY KEY, score bigint NOT NULL)"
_UPSERT_RAW = """
    INSERT INTO bench_raw_scores AS t (user_id, score)
    SELECT u, s FROM unnest(%s::text[], %s::bigint[]) AS x(u, s)
    ON CONFLICT (user_id) DO UPDATE SET score = t.score + EXCLUDED.score
"""


def _batches(cfg: BenchConfig, rng: np.random.Generator, count: int) -> list[tuple[list[str], list[int]]]:
    """Batches of distinct users (one statement may touch a row only once), positive points."""
    out = []
    for _ in range(count):
        users = rng.choice(cfg.user_space, size=cfg.baseline_batch, replace=False)
        points = rng.integers(1, cfg.points_max + 1, size=cfg.baseline_batch)
        out.append(([USER_FORMAT.format(u) for u in users], [int(p) for p in points]))
    return out


def raw_upsert(cfg: BenchConfig) -> dict[str, Any]:
    """Batched ``INSERT … ON CONFLICT DO UPDATE`` increments from one process, a commit per statement."""
    rng = np.random.default_rng(cfg.seed)
    batches = _batches(cfg, rng, 64)
    with psycopg.connect(**conninfo(DB_NAME)) as conn:
        conn.execute(_CREATE_RAW)
        conn.execute("TRUNCATE bench_raw_scores")
        conn.commit()
        statements = 0
        started = time.monotonic()
        deadline = started + cfg.duration
        while time.monotonic() < deadline:
            users, points = batches[statements % len(batches)]
            conn.execute(_UPSERT_RAW, [users, points])
            conn.commit()
            statements += 1
        elapsed = time.monotonic() - started
        rows = conn.execute("SELECT count(*) FROM bench_raw_scores").fetchone()[0]
    events = statements * cfg.baseline_batch
    return {"events": events, "seconds": elapsed, "events_per_s": events / elapsed, "rows": rows}


def raw_exactly_once(cfg: BenchConfig, board: Any) -> dict[str, Any]:
    """The service's own exactly-once apply from one process: ``score_events_apply`` (event-id
    insert + upsert into the real schema, ranking index included) on statements of
    ``baseline_batch`` events of distinct users, one transaction each. No broker, no ranking:
    the limit of exact apply that the end-to-end figures are held against."""
    from scores.services import now_micros, score_events_apply
    from tasks.messages import ScoreEvent

    rng = np.random.default_rng(cfg.seed)  # the raw upsert's users and points
    batches = _batches(cfg, rng, 64)
    statements = 0
    started = time.monotonic()
    deadline = started + cfg.duration
    while time.monotonic() < deadline:
        users, points = batches[statements % len(batches)]
        accepted_us = now_micros()
        # Distinct event ids: every statement applies (none is dropped as a duplicate).
        events = [
            ScoreEvent(board.id, user, p, f"eo-{statements}-{i}", accepted_us)
            for i, (user, p) in enumerate(zip(users, points, strict=True))
        ]
        score_events_apply(events=events)
        statements += 1
    elapsed = time.monotonic() - started
    events_applied = statements * cfg.baseline_batch
    return {
        "events": events_applied,
        "seconds": elapsed,
        "events_per_s": events_applied / elapsed,
        "statements": statements,
        "sum": board_sum(board.id),
    }


def redis_zincrby(cfg: BenchConfig) -> dict[str, Any]:
    """Pipelined ``ZINCRBY`` from one process, one round trip per pipeline."""
    from django_redis import get_redis_connection

    client = get_redis_connection("default")
    key = f"{PREFIX}:bench:raw-zset"
    client.delete(key)
    rng = np.random.default_rng(cfg.seed + 1)
    batches = _batches(cfg, rng, 64)
    pipelines = 0
    started = time.monotonic()
    deadline = started + cfg.duration
    while time.monotonic() < deadline:
        users, points = batches[pipelines % len(batches)]
        pipe = client.pipeline(transaction=False)
        for user, p in zip(users, points, strict=True):
            pipe.zincrby(key, p, user)
        pipe.execute()
        pipelines += 1
    elapsed = time.monotonic() - started
    members = client.zcard(key)
    client.delete(key)
    events = pipelines * cfg.baseline_batch
    return {"events": events, "seconds": elapsed, "events_per_s": events / elapsed, "members": members}


def naive_celery(cfg: BenchConfig, board_id: int) -> dict[str, Any]:
    """One task per event, published by ``ref_concurrency`` threads (like web threads) for the phase's
    duration; events/s from the first publish until every event is applied."""
    from bench.celery_naive import app as naive_app
    from bench.tasks import NAIVE_TASK

    rng = np.random.default_rng(cfg.seed + 2)
    users = [USER_FORMAT.format(u) for u in rng.integers(0, cfg.user_space, size=4096)]
    points = [int(p) for p in rng.integers(1, cfg.points_max + 1, size=4096)]
    cap = cfg.naive_max_events
    before = board_sum(board_id)
    lock = threading.Lock()
    counters = {"sent": 0, "points": 0}
    started = time.monotonic()
    deadline = started + cfg.duration

    def publisher() -> None:
        with naive_app.producer_or_acquire() as producer:
            while time.monotonic() < deadline:
                with lock:
                    i = counters["sent"]
                    if i >= cap:
                        return
                    counters["sent"] += 1
                    counters["points"] += points[i % len(points)]
                args = [board_id, users[i % len(users)], points[i % len(points)]]
                naive_app.send_task(NAIVE_TASK, args=args, producer=producer)

    threads = [threading.Thread(target=publisher) for _ in range(cfg.ref_concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    published = time.monotonic()
    sent, expected = counters["sent"], counters["points"]
    applied = wait_for_sum(board_id, before + expected, published + cfg.drain_timeout)
    finished = applied if applied is not None else time.monotonic()
    # A drain that timed out counts only what was applied (the points say how much).
    fraction = 1.0 if applied is not None else (board_sum(board_id) - before) / max(1, expected)
    return {
        "events": sent,
        "publishers": cfg.ref_concurrency,
        "publish_seconds": published - started,
        "seconds": finished - started,
        "events_per_s": fraction * sent / (finished - started),
        "complete": applied is not None,
    }
