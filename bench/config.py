"""Parameters of a full and a quick run, and the environment that isolates the benchmark.

The benchmark has its own database, Redis databases, queue and key prefixes, so it never
meets a running dev stack's or the test suite's data or messages.
"""

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

DB_NAME = "leaderboard_bench"
REDIS_CACHE_DB = 12
REDIS_RESULT_DB = 13
PREFIX = "lbbench"

# Where the services are may come from the caller's environment; everything else is ours.
_KEPT_VARIABLES = (
    "LEADERBOARD_DB_HOST",
    "LEADERBOARD_DB_PORT",
    "LEADERBOARD_DB_USER",
    "LEADERBOARD_DB_PASSWORD",
    "LEADERBOARD_BROKER_URL",
)


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    out: Path
    # Seconds of each timed phase, and of the one-connection latency phases.
    duration: float
    latency_duration: float
    # Client connections of the load sweep; the reference one is used for single figures.
    concurrencies: tuple[int, ...]
    ref_concurrency: int
    # Boards of this many seeded users: user-rank reads and ingest cost by board size.
    board_sizes: tuple[int, ...]
    # An end-to-end run stops sending after this many events, so its drain stays bounded.
    max_events_per_run: int
    # The naive baseline applies tens of events per second: fewer events keep its drain short.
    naive_max_events: int
    drain_timeout: float
    freshness_probes: int
    # Workers count as idle after this long without a finished task and with empty queues.
    quiet_seconds: float
    # Requests of the messages-per-request probe, per partition count and mode.
    probe_requests: int
    batch_size: int = 500
    # The probe's concurrent mode: threads submitting at once (one web process's).
    probe_threads: int = 16
    probe_partitions: tuple[int, ...] = (4, 64)
    # The many-boards run spreads the batched load over this many boards.
    many_boards: int = 100
    # Users of a fresh board's uniform and Zipf loads.
    user_space: int = 100_000
    zipf_s: float = 1.1
    points_max: int = 100
    # The baselines' statement and pipeline size.
    baseline_batch: int = 1000
    # The web tier (bin/web: granian): processes, and blocking threads per process.
    web_workers: int = 2
    web_threads: int = 64
    ingest_concurrency: int = 4  # ingest waits on Postgres, Redis and RabbitMQ: more processes than cores
    rank_concurrency: int = 2
    naive_concurrency: int = 2
    seed: int = 7
    strategies: tuple[str, ...] = field(default=("merge_tree", "sorted_set"))
    # The overload run (bench/overload.py): each multiple of the max sustained rate is
    # offered this long, then freshness is probed until it recovers or this many seconds pass.
    overload_seconds: float = 60.0
    overload_multiples: tuple[float, ...] = (2.0, 3.0)
    overload_recovery_max_s: float = 30.0
    # The front door (issue 16, bench/front_door.py), loaded by wrk. Its phases last whole
    # seconds (wrk takes no fractions); a service endpoint first gets a warm-up this long
    # at the phase's concurrency (every blocking thread's first request opens connections).
    rate_seconds: int = 5
    rate_warmup_seconds: int = 1
    floor_concurrency: int = 64
    single_event_concurrencies: tuple[int, ...] = (64, 256)
    # The sustained run: this share of the c=64 single-event rate, paced, for this long.
    sustained_seconds: int = 60
    sustained_fraction: float = 0.8

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def make_config(*, quick: bool, out: Path, **overrides: Any) -> BenchConfig:
    if quick:
        base: dict[str, Any] = {
            "duration": 0.8,
            "latency_duration": 0.4,
            "concurrencies": (8,),
            "ref_concurrency": 8,
            "board_sizes": (2_000, 20_000),
            "max_events_per_run": 2_000,
            "naive_max_events": 150,
            "drain_timeout": 20.0,
            "freshness_probes": 10,
            "quiet_seconds": 0.3,
            "probe_requests": 32,
            # 4 s (not 5) per multiple: room in the quick run's minute and a half for the front door.
            "overload_seconds": 4.0,
            "rate_seconds": 1,
            "rate_warmup_seconds": 0,
            "sustained_seconds": 5,
        }
    else:
        base = {
            "duration": 5.0,
            "latency_duration": 2.5,
            "concurrencies": (8, 16, 32),
            "ref_concurrency": 16,
            "board_sizes": (10_000, 100_000, 1_000_000),
            "max_events_per_run": 20_000,
            "naive_max_events": 2_000,
            "drain_timeout": 90.0,
            "freshness_probes": 50,
            "quiet_seconds": 0.5,
            "probe_requests": 128,
        }
    base.update({k: v for k, v in overrides.items() if v is not None})
    return BenchConfig(quick=quick, out=out, **base)


def bench_env(strategy: str = "merge_tree") -> dict[str, str]:
    """The environment of every process of the run: driver, web tier, workers, migrate."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADERBOARD_", "DJANGO_"))}
    env.update({k: os.environ[k] for k in _KEPT_VARIABLES if k in os.environ})
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "leaderboard_project.settings",
            "LEADERBOARD_DB_NAME": DB_NAME,
            "LEADERBOARD_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_CACHE_DB}",
            "LEADERBOARD_RESULT_BACKEND": f"redis://127.0.0.1:6379/{REDIS_RESULT_DB}",
            "LEADERBOARD_QUEUE_PREFIX": PREFIX,
            "LEADERBOARD_REDIS_PREFIX": PREFIX,
            "LEADERBOARD_BENCH_ENDPOINTS": "1",
            "LEADERBOARD_RANKING_STRATEGY": strategy,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
