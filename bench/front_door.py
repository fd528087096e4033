"""Issue 16, the front door at wire speed: single-event requests against the HTTP floors.

Every phase here is loaded by wrk (bench/wrk.py), each request a single event of a
distinct user with the bench's key:

- the floors: the bare app (bench/floor_app.py) under granian and under gunicorn gthread,
  the web tier's workers and threads, at ``floor_concurrency``; and the bare DRF POST
  (``/bench/noop``) under bin/web, the framework's floor;
- single events on the real endpoint at each of ``single_event_concurrencies``; at the
  first (c=64) also each tier's CPU per 202 (bench/cpu.py), the messages the web tier
  published per request (its Redis counters) and the events per ingest transaction (the
  ingest worker's log);
- the sustained run: ``sustained_fraction`` of the c=64 rate, paced by wrk's ``delay()``
  on 64 connections, for ``sustained_seconds``, with freshness probes throughout and the
  backlog sampled every second.
"""

import asyncio
import time
from typing import Any

from bench import cpu
from bench.boards import board_make
from bench.merge_log import log_offset, per_transaction, task_costs
from bench.overload import BacklogSampler
from bench.service import Ctx, Probes, settle
from bench.store import board_sum
from bench.wrk import WrkRun, wrk_post

# The web tier flushes its message counter every ~0.25 s: a read this long after the load
# has every message of it.
COUNTER_FLUSH_WAIT_S = 1.0
SUSTAINED_SAMPLE_S = 1.0
SUSTAINED_CONCURRENCY = 64
# Between two freshness probes of the sustained run: each probe polls GET /top until it
# shows, and polling without a pause would add its own load to the web tier.
_PROBE_GAP_S = 0.25
# The stack's tiers (bench/cpu.py), in the report's order; the load client comes apart.
TIERS = ("web", "workers", "broker", "postgres", "redis")


def http_floors(ctx: Ctx) -> dict[str, Any]:
    """The bare app under granian and under gunicorn, then the bare DRF POST under bin/web."""
    cfg = ctx.cfg
    out: dict[str, Any] = {}
    for server in ("granian", "gunicorn"):
        url = ctx.stack.start_floor(server)
        command = ctx.stack.describe()[f"floor-{server}"]
        try:
            out[server] = wrk_post(url, ctx.write_key, concurrency=cfg.floor_concurrency, seconds=cfg.rate_seconds)
        finally:
            ctx.stack.stop(f"floor-{server}")
        out[server]["command"] = command
    _warm_up(ctx, ctx.noop, cfg.floor_concurrency)
    out["drf"] = wrk_post(ctx.noop, ctx.write_key, concurrency=cfg.floor_concurrency, seconds=cfg.rate_seconds)
    return out


def _counters() -> dict[str, int | None]:
    """The web tier's Redis counters: messages it published and events in them (None: no key)."""
    from rankings.cache import redis_client
    from scores.admission import _counter_key

    names = ("messages", "published")
    values = redis_client().mget([_counter_key(name) for name in names])
    return {name: None if value is None else int(value) for name, value in zip(names, values, strict=True)}


def _counted(before: int | None, after: int | None) -> int | None:
    # A key made during the phase counted from 0; one still missing after it is unknown.
    if after is None:
        return None
    return after - (before or 0)


def _per(value: float | None, requests: int) -> float | None:
    return None if value is None or not requests else value / requests


def _warm_up(ctx: Ctx, url: str, concurrency: int) -> None:
    """A short load on ``url`` before a measured one, then wait for the pipeline to be idle again."""
    if ctx.cfg.rate_warmup_seconds:
        wrk_post(url, ctx.write_key, concurrency=concurrency, seconds=ctx.cfg.rate_warmup_seconds)
        ctx.stack.wait_quiet(ctx.cfg.drain_timeout)


def single_event(ctx: Ctx, board: Any, concurrency: int, *, costs: bool) -> dict[str, Any]:
    """wrk at ``concurrency`` on the board's scores endpoint; with ``costs``, each tier's CPU,
    messages per request and events per transaction over the phase."""
    cfg = ctx.cfg
    url = ctx.api(board.slug, "scores")
    _warm_up(ctx, ctx.api(board_make(f"warm-up-c{concurrency}").slug, "scores"), concurrency)
    before_sum = board_sum(board.id)
    ingest_log = ctx.stack.log_path("ingest")
    offset = log_offset(ingest_log)
    roots = ctx.stack.cpu_roots()
    counters_before, cpu_before = _counters(), cpu.snapshot(roots)
    result = wrk_post(url, ctx.write_key, concurrency=concurrency, seconds=cfg.rate_seconds)
    cpu_load_end = cpu.snapshot(roots)
    time.sleep(COUNTER_FLUSH_WAIT_S)
    counters_after = _counters()
    result["settle"] = settle(ctx, board, before_sum + result["ok"])
    if not costs:
        return result
    cpu_drained = cpu.snapshot(roots)
    messages = _counted(counters_before["messages"], counters_after["messages"])
    published = _counted(counters_before["published"], counters_after["published"])
    # wrk drops the answers in flight when its time is up (up to ``concurrency`` requests the
    # service served all the same): the web tier's count of events published, one a request,
    # is the requests answered 202; wrk's own count when the counter is missing or short.
    served = published if published is not None and published >= result["ok"] else result["ok"]
    # Web: while the load ran (it answers nothing afterwards). Workers and services: until
    # the pipeline was idle again, so the work the requests left behind counts too.
    ms = {tier: (cpu_load_end if tier == "web" else cpu_drained)[tier] - cpu_before[tier] for tier in TIERS}
    per = {tier: _per(value, served) for tier, value in ms.items()}
    per["stack"] = _per(sum(ms.values()), served)
    per["client"] = _per(result["client_cpu_ms"], served)
    result["served_202"] = served
    result["cpu"] = {
        "ms": {**ms, "client": result["client_cpu_ms"]},
        "ms_at_load_end": {tier: cpu_load_end[tier] - cpu_before[tier] for tier in TIERS},
        "core_ms_per_202": per,
        "roots": {tier: sorted(pids) for tier, pids in roots.items()},
    }
    result["messages"] = {
        "counters_before": counters_before,
        "counters_after": counters_after,
        "messages": messages,
        "published_events": published,
        "messages_per_request": _per(messages, served),
        "events_per_message": None if not messages or published is None else published / messages,
    }
    txn = task_costs(ingest_log, offset, log_offset(ingest_log))["transactions"]
    result["transactions"] = {
        **txn,
        "events_per_transaction": per_transaction(txn, "events"),
        "messages_per_transaction": per_transaction(txn, "messages"),
    }
    return result


async def _probe_until(ctx: Ctx, board: Any, until: float) -> Probes:
    from bench.load import session

    probes = Probes(ctx, board)
    async with session(2) as client:
        while time.monotonic() < until:
            await probes.probe(client)
            await asyncio.sleep(_PROBE_GAP_S)
    return probes


def sustained(ctx: Ctx, max_rate: float) -> dict[str, Any]:
    """``sustained_fraction`` of ``max_rate`` for ``sustained_seconds``, with freshness probes
    and the backlog (published less applied events, ingest messages ready) every second."""
    cfg = ctx.cfg
    board = board_make("sustained")
    rate = cfg.sustained_fraction * max_rate
    url = ctx.api(board.slug, "scores")
    run = WrkRun(url, ctx.write_key, SUSTAINED_CONCURRENCY, cfg.sustained_seconds, rate=rate).start()
    sampler = BacklogSampler(run.started, interval=SUSTAINED_SAMPLE_S)
    sampler.start()
    try:
        probes = asyncio.run(_probe_until(ctx, board, run.started + cfg.sustained_seconds))
        result = run.finish()
        drained = settle(ctx, board, result["ok"] + probes.points)
    finally:
        sampler.stop()
    end_s = result["seconds"]
    during = [s for s in sampler.samples if s["t"] <= end_s]
    result.update(
        {
            "max_rate": max_rate,
            "fraction": cfg.sustained_fraction,
            "pacing": "wrk delay(): each thread's k-th request due at start + k / (rate / threads)",
            "freshness": probes.as_dict(),
            # Clamped at 0: a redelivery applied twice reads below 0 until the monitor levels it.
            "backlog_max_events": max((max(0, s["events"]) for s in during), default=None),
            "ingest_messages_max": max((s["ingest_messages"] for s in during), default=None),
            "backlog_samples_during": len(during),
            # From wrk's start, through the drain: "t" past ``seconds`` is after the load.
            "backlog": sampler.samples,
            "backlog_sample_errors": sampler.errors,
            "settle": drained,
        }
    )
    return result
