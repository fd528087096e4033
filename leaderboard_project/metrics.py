"""Prometheus metrics: the metric objects, one small recording function each, the scrape.

Web and Celery run many processes, so values live in prometheus-client's multiprocess
mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (the project's scripts set it and empty it
at start): every process writes its own files, and a scrape of any web process sums them.
Without it (a single process, the tests' client) the objects below are read directly.

Queue depths are not recorded by anyone: a collector asks RabbitMQ at scrape time.

Boards are labelled by slug. Their number is small (a label per board is what
"per board" costs); users never become labels.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

# Seconds from the web tier's accepted time to the commit (lag) and to the top-N (freshness).
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_LEVEL_BUCKETS = tuple(float(n) for n in range(11))  # at most ten merge levels

# registry=None: the scrape builds its own registry (see metrics_registry).
EVENTS_ACCEPTED = Counter(
    "leaderboard_events_accepted", "Events answered with 202 by the web tier", ["board"], registry=None
)
EVENTS_APPLIED = Counter(
    "leaderboard_events_applied", "Events applied to the scores by an ingest worker", ["board"], registry=None
)
EVENTS_DUPLICATE = Counter(
    "leaderboard_events_duplicate", "Events dropped as already applied (same event_id)", ["board"], registry=None
)
INGEST_LAG = Histogram(
    "leaderboard_ingest_lag_seconds", "Accepted (202) to applied (committed)", buckets=_LATENCY_BUCKETS, registry=None
)
FRESHNESS = Histogram(
    "leaderboard_freshness_seconds", "Accepted (202) to visible in the top-N", buckets=_LATENCY_BUCKETS, registry=None
)
ROOT_RUNS = Counter("leaderboard_root_runs", "Merge roots that published a board's top-N", ["board"], registry=None)
MERGE_LEVELS = Histogram(
    "leaderboard_merge_levels", "Merge levels below each root", ["board"], buckets=_LEVEL_BUCKETS, registry=None
)
INDEX_REBUILDS = Counter(
    "leaderboard_rank_index_rebuilds", "Rank indexes rebuilt from the database", ["board"], registry=None
)
RECONCILE_REPAIRS = Counter(
    "leaderboard_reconcile_repairs", "Top-N lists the reconcile found wrong and rewrote", ["board"], registry=None
)
PARTIALS_SET_ASIDE = Counter(
    "leaderboard_partials_set_aside",
    "Merge-level partials no root could read (set aside; the board repaired from the database)",
    ["board"],
    registry=None,
)
HTTP_ERRORS = Counter("leaderboard_http_errors", "Responses with a 4xx or 5xx status", ["status"], registry=None)

_RECORDED = [
    EVENTS_ACCEPTED,
    EVENTS_APPLIED,
    EVENTS_DUPLICATE,
    INGEST_LAG,
    FRESHNESS,
    ROOT_RUNS,
    MERGE_LEVELS,
    INDEX_REBUILDS,
    RECONCILE_REPAIRS,
    PARTIALS_SET_ASIDE,
    HTTP_ERRORS,
]


# --- recording: one line at each call site --------------------------------------------


def events_accepted(board: str, count: int) -> None:
    EVENTS_ACCEPTED.labels(board).inc(count)


def events_applied(board: str, applied: int, duplicates: int) -> None:
    EVENTS_APPLIED.labels(board).inc(applied)
    EVENTS_DUPLICATE.labels(board).inc(duplicates)


def ingest_lag_observe(seconds: float) -> None:
    INGEST_LAG.observe(seconds)


def freshness_observe(seconds: float) -> None:
    FRESHNESS.observe(seconds)


def root_run(board: str, levels: int) -> None:
    ROOT_RUNS.labels(board).inc()
    MERGE_LEVELS.labels(board).observe(levels)


def rank_index_rebuilt(board: str) -> None:
    INDEX_REBUILDS.labels(board).inc()


def reconcile_repaired(board: str) -> None:
    RECONCILE_REPAIRS.labels(board).inc()


def partial_set_aside(board: str) -> None:
    PARTIALS_SET_ASIDE.labels(board).inc()


def http_response(status: int) -> None:
    if status >= 400:
        HTTP_ERRORS.labels(str(status)).inc()


# --- the scrape -------------------------------------------------------------------------


class QueueDepthCollector:
    """Ready messages and consumers of every work queue and the dead-letter queue, asked
    of RabbitMQ at scrape time (a passive declare per queue)."""

    def collect(self) -> Iterator[Metric]:
        from operations.broker import pipeline_queue_names, queue_stats  # Django must be set up

        messages = GaugeMetricFamily("leaderboard_queue_messages", "Ready messages in the queue", labels=["queue"])
        consumers = GaugeMetricFamily("leaderboard_queue_consumers", "Consumers of the queue", labels=["queue"])
        up = GaugeMetricFamily("leaderboard_broker_up", "1 when RabbitMQ answered the scrape's queue declares")
        stats = queue_stats(pipeline_queue_names())
        for name, stat in stats.items():
            if stat is not None:
                messages.add_metric([name], stat.messages)
                consumers.add_metric([name], stat.consumers)
        up.add_metric([], 1 if any(stat is not None for stat in stats.values()) else 0)
        yield from (messages, consumers, up)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def metrics_registry(*, queues: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry()
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        for metric in _RECORDED:
            registry.register(metric)
    if queues:
        registry.register(QueueDepthCollector())
    return registry


def metrics_text() -> bytes:
    return generate_latest(metrics_registry())


@dataclass(frozen=True)
class HistogramSummary:
    count: int
    mean: float | None
    p50: float | None
    p99: float | None


def _quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float | None:
    """The upper bound of the first bucket holding the q-th observation (what a bucketed
    histogram can say without interpolating)."""
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound
    return None


def histogram_summary(name: str) -> HistogramSummary:
    """Count, mean and bucket-bound p50/p99 of a histogram, summed over processes and labels."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for metric in metrics_registry(queues=False).collect():
        if metric.name != name:
            continue
        for sample in metric.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == f"{name}_sum":
                total += sample.value
            elif sample.name == f"{name}_count":
                count += sample.value
    if not count:
        return HistogramSummary(0, None, None, None)
    ordered = sorted(buckets.items())
    return HistogramSummary(int(count), total / count, _quantile(ordered, count, 0.5), _quantile(ordered, count, 0.99))


class ResponseMetricsMiddleware:
    """Counts 4xx and 5xx answers (503 among them). First in MIDDLEWARE, so it sees the
    responses every later layer made, errors turned into 500 pages included."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        http_response(response.status_code)
        return response
