"""The run: prepare the isolated stores, start the stack, measure every phase, stop everything."""

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench import baselines, front_door, service
from bench.boards import board_make, board_seed, statistics_refresh, write_key
from bench.config import BenchConfig, bench_env
from bench.merge_log import log_offset, task_costs
from bench.messages_probe import messages_per_request
from bench.overload import overload_phase
from bench.stack import Stack
from bench.workload import uniform, zipf


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


def use_bench_env() -> None:
    """Make this process's environment the benchmark's before Django reads its settings."""
    env = bench_env()
    for name in [k for k in os.environ if k.startswith(("LEADERBOARD_", "DJANGO_")) and k not in env]:
        del os.environ[name]
    os.environ.update(env)


def _e2e_plan(cfg: BenchConfig, strategy: str) -> list[tuple[str, int]]:
    uniform_runs = cfg.concurrencies if strategy == "merge_tree" else (cfg.ref_concurrency,)
    return [*(("uniform", c) for c in uniform_runs), ("zipf", cfg.ref_concurrency)]


@contextmanager
def _timed(raw: dict[str, Any], phase: str) -> Iterator[None]:
    """Record the phase's wall seconds in ``raw["phase_seconds"]`` (what a run's length is made of)."""
    started = time.monotonic()
    try:
        yield
    finally:
        raw["phase_seconds"][phase] = round(time.monotonic() - started, 1)


def run_phases(cfg: BenchConfig, stack: Stack, say: Progress) -> dict[str, Any]:
    raw: dict[str, Any] = {"seeding_s": {}, "seeding_steps": {}, "strategies": {}, "phase_seconds": {}}
    say(f"starting the web tier (bin/web) and workers on port {stack.port}")
    with _timed(raw, "start"):
        stack.start("merge_tree", naive=True)
    raw["processes"] = stack.describe()
    ctx = service.Ctx(cfg, stack, {"Authorization": f"Bearer {write_key()}"}, np.random.default_rng(cfg.seed))

    sized: dict[int, Any] = {}
    with _timed(raw, "seeding"):
        for users in cfg.board_sizes:
            started = time.monotonic()
            sized[users], raw["seeding_steps"][str(users)] = board_seed(f"size-{users}", users, cfg)
            raw["seeding_s"][str(users)] = time.monotonic() - started
            say(f"seeded a board of {users} users in {raw['seeding_s'][str(users)]:.1f} s")
        raw["analyze_s"] = statistics_refresh()

    with _timed(raw, "baselines"):
        raw["baselines"] = _baselines(ctx, say)
    with _timed(raw, "http_floor"):
        raw["http_floor"] = _http_floor_phase(ctx, say)

    with _timed(raw, "messages_probe"):
        probe_board = board_make("messages-probe")
        raw["messages_per_request"] = {}
        for partitions in cfg.probe_partitions:
            probe = raw["messages_per_request"][str(partitions)] = messages_per_request(cfg, probe_board, partitions)
            say(
                f"messages per request at P={partitions}: {probe['sequential']['messages_per_request']:.2f} "
                f"one by one, {probe['concurrent']['messages_per_request']:.2f} from {cfg.probe_threads} threads"
            )
    raw["merge_window_ms"] = _merge_window_ms()

    largest = sized[max(sized)]
    for strategy in cfg.strategies:
        if strategy != stack.strategy:
            say(f"restarting the web tier and workers with LEADERBOARD_RANKING_STRATEGY={strategy}")
            with _timed(raw, f"restart_{strategy}"):
                stack.start(strategy)
            say("restarted")
        with _timed(raw, strategy):
            raw["strategies"][strategy] = _strategy_phases(ctx, strategy, say, largest)
        if strategy == "merge_tree":
            _, conc = max(
                (r["events_per_s"], int(k.split("/c")[1]))
                for k, r in raw["strategies"][strategy]["e2e"].items()
                if k.startswith("uniform/")
            )
            with _timed(raw, "many_boards"):
                raw["many_boards"] = _many_boards_phase(ctx, say, conc)
            with _timed(raw, "profiles_cost"):
                raw["profiles_cost"] = _profiles_cost_phase(ctx, say, conc)
            with _timed(raw, "single_event"):
                raw["single_event"] = _single_event_phase(ctx, say)
            with _timed(raw, "sustained"):
                raw["sustained"] = _sustained_phase(ctx, say, raw["single_event"])
            with _timed(raw, "reads_and_ingest_cost"):
                raw.update(_default_only_phases(ctx, sized, say))
            with _timed(raw, "overload"):
                raw["overload"] = _overload_phase(ctx, say, raw["strategies"][strategy]["e2e"])
    return raw


def _baselines(ctx: service.Ctx, say: Progress) -> dict[str, Any]:
    cfg, stack = ctx.cfg, ctx.stack
    base: dict[str, Any] = {}
    base["raw_upsert"] = baselines.raw_upsert(cfg)
    say(f"baseline raw batched upsert: {base['raw_upsert']['events_per_s']:.0f} events/s")
    base["raw_exactly_once"] = baselines.raw_exactly_once(cfg, board_make("exactly-once"))
    say(f"baseline exactly-once apply (service SQL): {base['raw_exactly_once']['events_per_s']:.0f} events/s")
    base["redis_zincrby"] = baselines.redis_zincrby(cfg)
    say(f"baseline pipelined ZINCRBY: {base['redis_zincrby']['events_per_s']:.0f} events/s")
    base["naive_celery"] = baselines.naive_celery(cfg, board_make("naive").id)
    say(f"baseline one task per event: {base['naive_celery']['events_per_s']:.0f} events/s")
    stack.terminate("naive")  # reaped at the next start or at the end
    base["noop_post"] = {str(c): service.noop_post(ctx, c).as_dict() for c in cfg.concurrencies}
    base["noop_get"] = {str(c): service.reads(ctx, [ctx.noop], c, cfg.duration) for c in cfg.concurrencies}
    base["noop_get_c1"] = service.reads(ctx, [ctx.noop], 1, cfg.latency_duration)
    say(f"baseline bare DRF endpoint: POST {base['noop_post'][str(cfg.ref_concurrency)]['ok_per_s']:.0f} req/s")
    return base


def _http_floor_phase(ctx: service.Ctx, say: Progress) -> dict[str, Any]:
    floors = front_door.http_floors(ctx)
    c = ctx.cfg.floor_concurrency
    say(
        f"HTTP floor (wrk, c={c}): bare app under granian {floors['granian']['ok_per_s']:.0f} req/s, "
        f"under gunicorn {floors['gunicorn']['ok_per_s']:.0f}; bare DRF POST under bin/web "
        f"{floors['drf']['ok_per_s']:.0f}"
    )
    return floors


def _single_event_phase(ctx: service.Ctx, say: Progress) -> dict[str, Any]:
    """Single events by wrk at each concurrency, each level on idle workers; the costs at the first."""
    board = board_make("single")
    out: dict[str, Any] = {}
    for n, concurrency in enumerate(ctx.cfg.single_event_concurrencies):
        result = out[str(concurrency)] = front_door.single_event(ctx, board, concurrency, costs=n == 0)
        lat = result["latency_ms"]
        line = (
            f"single-event submissions (wrk), c={concurrency}: {result['ok_per_s']:.0f} req/s answered 202 "
            f"({result['not_ok']} other), p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms"
        )
        if "cpu" in result:
            per = result["cpu"]["core_ms_per_202"]
            line += "; core-ms per 202: " + ", ".join(
                f"{tier} {value:.3f}" for tier, value in per.items() if value is not None
            )
        say(line)
    return out


def _sustained_phase(ctx: service.Ctx, say: Progress, single: dict[str, Any]) -> dict[str, Any]:
    best = single[str(ctx.cfg.single_event_concurrencies[0])]["ok_per_s"]
    cfg = ctx.cfg
    say(f"sustained: {cfg.sustained_fraction:.0%} of {best:.0f} single events/s for {cfg.sustained_seconds} s")
    result = front_door.sustained(ctx, best)
    fresh = result["freshness"]["ms"]
    say(
        f"sustained: {result['ok_per_s']:.0f} req/s answered 202 of {result['target_rate']:.0f} offered; "
        f"freshness p50 {fresh['p50']:.0f} ms, p99 {fresh['p99']:.0f} ms (n={fresh['n']}); "
        f"backlog max {result['backlog_max_events']} events"
    )
    return result


def _merge_window_ms() -> int:
    from django.conf import settings

    return int(settings.LEADERBOARD_MERGE_WINDOW_MS)


def _many_boards_phase(ctx: service.Ctx, say: Progress, concurrency: int) -> dict[str, Any]:
    """The batched load spread over many boards (each request to one drawn uniformly), at the
    concurrency of the best one-board run; then freshness on one of them under that spread."""
    cfg = ctx.cfg
    boards = [board_make(f"many-{n:03d}") for n in range(cfg.many_boards)]
    rank_log, ingest_log = ctx.stack.log_path("rank"), ctx.stack.log_path("ingest")
    offsets = log_offset(rank_log), log_offset(ingest_log)
    out: dict[str, Any] = {"e2e": service.e2e_boards(ctx, boards, uniform(cfg.user_space), concurrency)}
    out["rank_tasks"] = task_costs(rank_log, offsets[0], log_offset(rank_log))
    out["ingest_tasks"] = task_costs(ingest_log, offsets[1], log_offset(ingest_log))
    rate = out["e2e"]["events_per_s"]
    say(
        f"many boards ({cfg.many_boards}), uniform, c={concurrency}: {rate:.0f} events/s "
        f"({out['e2e']['boards_with_events']} boards got events, complete={out['e2e']['complete']})"
    )
    out["freshness"] = service.freshness(ctx, boards[0], rate / 2, spread=boards)
    say(f"many boards freshness at {rate / 2:.0f} events/s: {_fmt_summary(out['freshness']['ms'])}")
    return out


# Issue 20: every event with a display name and 200 bytes of metadata, against none.
PROFILE_METADATA_BYTES = 200


def _profiles_cost_phase(ctx: service.Ctx, say: Progress, concurrency: int) -> dict[str, Any]:
    """The batched load on a fresh board without profiles and on one whose every event
    carries them, in turns (twice each, so drift over the run falls on both alike)."""
    sampler = uniform(ctx.cfg.user_space)
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "metadata": []}
    for turn in range(2):
        for kind, size in (("plain", 0), ("metadata", PROFILE_METADATA_BYTES)):
            board = board_make(f"profiles-{kind}-{turn}")
            runs[kind].append(service.e2e_boards(ctx, [board], sampler, concurrency, metadata_bytes=size))
    rates = {kind: [run["events_per_s"] for run in found] for kind, found in runs.items()}
    say(
        f"profiles cost, uniform, c={concurrency}: without {rates['plain']} events/s, "
        f"with {PROFILE_METADATA_BYTES} B of metadata {rates['metadata']} events/s"
    )
    return {"concurrency": concurrency, "metadata_bytes": PROFILE_METADATA_BYTES, "runs": runs}


def _overload_phase(ctx: service.Ctx, say: Progress, e2e: dict[str, Any]) -> dict[str, Any]:
    """2x and 3x the best uniform end-to-end rate of this run (issue 12), on idle workers."""
    best = max(r["events_per_s"] for k, r in e2e.items() if k.startswith("uniform/"))
    say(f"overload: offering {' then '.join(f'{m:g}x' for m in ctx.cfg.overload_multiples)} of {best:.0f} events/s")
    return overload_phase(ctx, best, say)


def _strategy_phases(ctx: service.Ctx, strategy: str, say: Progress, top_board: Any) -> dict[str, Any]:
    cfg = ctx.cfg
    top_url = ctx.api(top_board.slug, "top?limit=10")
    out: dict[str, Any] = {"e2e": {}}
    rank_log, ingest_log = ctx.stack.log_path("rank"), ctx.stack.log_path("ingest")
    offsets = log_offset(rank_log), log_offset(ingest_log)
    for dist, concurrency in _e2e_plan(cfg, strategy):
        board = board_make(f"e2e-{strategy.replace('_', '-')}-{dist}-c{concurrency}")
        sampler = uniform(cfg.user_space) if dist == "uniform" else zipf(cfg.user_space, cfg.zipf_s)
        result = service.e2e_batched(ctx, board, sampler, concurrency)
        out["e2e"][f"{dist}/c{concurrency}"] = result
        say(
            f"{strategy} end to end, {dist}, c={concurrency}: {result['events_per_s']:.0f} events/s "
            f"(accepted {result['http']['accepted_events']}, complete={result['complete']})"
        )
    out["rank_tasks"] = task_costs(rank_log, offsets[0], log_offset(rank_log))
    out["ingest_tasks"] = task_costs(ingest_log, offsets[1], log_offset(ingest_log))
    out["root_runs"] = _root_runs(out["e2e"], out["rank_tasks"]["roots"]["by_board"])

    best = max(r["events_per_s"] for k, r in out["e2e"].items() if k.startswith("uniform/"))
    out["freshness"] = service.freshness(ctx, board_make(f"fresh-{strategy.replace('_', '-')}"), best / 2)
    say(f"{strategy} freshness at {best / 2:.0f} events/s: {_fmt_summary(out['freshness']['ms'])}")

    out["top_read_c1"] = service.reads(ctx, [top_url], 1, cfg.latency_duration)
    sweep = cfg.concurrencies if strategy == "merge_tree" else (cfg.ref_concurrency,)
    out["top_read"] = {str(c): service.reads(ctx, [top_url], c, cfg.duration) for c in sweep}
    say(f"{strategy} top-N read, c=1: {_fmt_summary(out['top_read_c1']['latency_ms'])}")
    if strategy == "merge_tree":
        out["live_page"] = service.live_page_polls(ctx, top_board, cfg.ref_concurrency, cfg.duration)
        say(f"live page: {out['live_page']['cores_for_1000_pages']:.2f} cores for 1,000 open pages")
    return out


def _root_runs(e2e: dict[str, Any], by_board: dict[str, int]) -> dict[str, Any]:
    """Each one-board run's root runs on its board, per second from its first send until idle."""
    out = {}
    for key, run in e2e.items():
        roots = by_board.get(str(run["board_id"]), 0)
        seconds = run["idle_s"] or run["seconds"]
        out[key] = {"roots": roots, "seconds": seconds, "per_s": roots / seconds if seconds else None}
    return out


def _default_only_phases(ctx: service.Ctx, sized: dict[int, Any], say: Progress) -> dict[str, Any]:
    """Figures that do not depend on the ranking strategy, measured once with the default."""
    cfg = ctx.cfg
    out: dict[str, Any] = {"user_rank_c1": {}, "user_rank": {}, "ingest_cost": {}}
    for users, sized_board in sized.items():
        urls = service.user_urls(ctx, sized_board, users)
        out["user_rank_c1"][str(users)] = service.reads(ctx, urls, 1, cfg.latency_duration)
        out["user_rank"][str(users)] = service.reads(ctx, urls, cfg.ref_concurrency, cfg.duration)
        say(f"user-rank read at {users} users, c=1: {_fmt_summary(out['user_rank_c1'][str(users)]['latency_ms'])}")

    # Issue 10's reads on the largest board: a rank range half way down and a friends board.
    users = max(sized)
    ranges, friends = service.rank_range_urls(ctx, sized[users], users), service.friends_urls(ctx, sized[users], users)
    out["rank_range"] = {"users": users, "depth": users // 2}
    out["rank_range"]["c1"] = service.reads(ctx, ranges, 1, cfg.latency_duration)
    out["rank_range"]["cref"] = service.reads(ctx, ranges, cfg.ref_concurrency, cfg.duration)
    say(f"rank range at depth {users // 2:,}, c=1: {_fmt_summary(out['rank_range']['c1']['latency_ms'])}")
    out["friends"] = {"users": users, "ids": service.FRIENDS_PER_LOOKUP}
    out["friends"]["c1"] = service.reads(ctx, friends, 1, cfg.latency_duration)
    out["friends"]["cref"] = service.reads(ctx, friends, cfg.ref_concurrency, cfg.duration)
    say(f"{service.FRIENDS_PER_LOOKUP}-id friends lookup, c=1: {_fmt_summary(out['friends']['c1']['latency_ms'])}")

    for users in (min(sized), max(sized)):
        result = service.e2e_batched(ctx, sized[users], uniform(users), cfg.ref_concurrency)
        out["ingest_cost"][str(users)] = result
        say(f"ingest on a board of {users} users: {result['events_per_s']:.0f} events/s")
    return out


def _fmt_summary(ms: dict[str, float]) -> str:
    return f"p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms (n={ms['n']})"
