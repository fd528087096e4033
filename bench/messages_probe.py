"""Messages a request costs, counted on the broker: does it grow with the ingest partitions?

In the driver process, with ``LEADERBOARD_INGEST_PARTITIONS`` set to P and the queue prefix
set to a probe prefix no worker consumes, requests of ``batch_size`` events whose users
spread over every partition go through ``score_events_submit`` (the web tier's own path,
its shared publisher included): one by one, then from many threads at once. The messages
that land are counted on the queues (a passive declare's message count), and the queues
are deleted afterwards.
"""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench.config import PREFIX, BenchConfig
from bench.workload import USER_FORMAT

PROBE_PREFIX = f"{PREFIX}-probe"
_SETTLE_TIMEOUT = 3.0


def _request_events(cfg: BenchConfig, rng: np.random.Generator, requests: int) -> list[list[dict]]:
    bodies = []
    for _ in range(requests):
        users = rng.integers(0, cfg.user_space, size=cfg.batch_size)
        points = rng.integers(1, cfg.points_max + 1, size=cfg.batch_size)
        events = [{"user_id": USER_FORMAT.format(u), "points": int(p)} for u, p in zip(users, points, strict=True)]
        bodies.append(events)
    return bodies


@contextmanager
def _probe_queues(prefix: str, partitions: int) -> Iterator[list[str]]:
    """Declare the probe's ingest queues (and register them with the app, so its publish
    declares them alike); delete them, their exchanges and the registration afterwards."""
    from kombu import Exchange, Queue

    from leaderboard_project.celery import app as celery_app
    from tasks.queues import ingest_queue_name

    queues = [
        Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True)
        for name in (ingest_queue_name(prefix, n) for n in range(partitions))
    ]
    with celery_app.connection_for_write() as conn:
        channel = conn.channel()
        try:
            for queue in queues:
                queue(channel).declare()
                celery_app.amqp.queues.add(queue)
            yield [queue.name for queue in queues]
        finally:
            for queue in queues:
                celery_app.amqp.queues.pop(queue.name, None)
                channel.queue_delete(queue.name)
                channel.exchange_delete(queue.name)


def _count(names: list[str]) -> int:
    """Messages on these queues, read until two reads agree (a confirmed publish is counted
    by the queue at once, but this costs nothing)."""
    from leaderboard_project.celery import app as celery_app

    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        last = -1
        deadline = time.monotonic() + _SETTLE_TIMEOUT
        while True:
            total = sum(channel.queue_declare(queue=name, passive=True).message_count for name in names)
            if total == last or time.monotonic() > deadline:
                return total
            last = total
            time.sleep(0.05)


def _probe(board: Any, partitions: int, bodies: list[list[dict]], threads: int) -> dict[str, Any]:
    from django.test import override_settings

    from scores.services import score_events_submit

    mode = "seq" if threads == 1 else f"t{threads}"
    prefix = f"{PROBE_PREFIX}-p{partitions}-{mode}"
    with (
        _probe_queues(prefix, partitions) as names,
        # Nobody applies the probe's messages: its backlog counters live under its own
        # prefix, and admission control (which would soon refuse them) is out of the way.
        override_settings(
            LEADERBOARD_INGEST_PARTITIONS=partitions,
            LEADERBOARD_QUEUE_PREFIX=prefix,
            LEADERBOARD_REDIS_PREFIX=prefix,
            LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS=10**12,
        ),
    ):
        started = time.monotonic()
        if threads == 1:
            for events in bodies:
                score_events_submit(leaderboard=board, events=events)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(lambda events: score_events_submit(leaderboard=board, events=events), bodies))
        elapsed = time.monotonic() - started
        messages = _count(names)
    return {
        "requests": len(bodies),
        "threads": threads,
        "messages": messages,
        "messages_per_request": messages / len(bodies),
        "seconds": elapsed,
    }


def messages_per_request(cfg: BenchConfig, board: Any, partitions: int) -> dict[str, Any]:
    """Messages per request at P partitions, sequential and from ``cfg.probe_threads`` threads."""
    from scores.partitioning import partition_of

    rng = np.random.default_rng(cfg.seed + 4)
    bodies = _request_events(cfg, rng, cfg.probe_requests)
    # What a message per partition touched would cost: the design this probe guards against.
    touched = [len({partition_of(e["user_id"], partitions) for e in events}) for events in bodies]
    return {
        "partitions": partitions,
        "events_per_request": cfg.batch_size,
        "partitions_touched_per_request_mean": sum(touched) / len(touched),
        "sequential": _probe(board, partitions, bodies, 1),
        "concurrent": _probe(board, partitions, bodies, cfg.probe_threads),
    }
