"""``python -m bench [--quick] [--out DIR]``: run the benchmark, print the table, write JSON and PNG."""

import argparse
import atexit
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.config import BenchConfig, make_config


def parse_args(argv: list[str]) -> BenchConfig:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, small boards (some 90 s; for CI)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for latest.json/png")
    parser.add_argument("--duration", type=float, help="seconds per timed phase")
    parser.add_argument("--web-workers", type=int, help="web tier processes (bin/web: granian workers)")
    parser.add_argument("--web-threads", type=int, help="blocking threads per web tier process")
    parser.add_argument("--ingest-concurrency", type=int, help="processes of the ingest worker")
    parser.add_argument("--rank-concurrency", type=int, help="processes of the rank worker")
    args = parser.parse_args(argv)
    return make_config(
        quick=args.quick,
        out=args.out,
        duration=args.duration,
        web_workers=args.web_workers,
        web_threads=args.web_threads,
        ingest_concurrency=args.ingest_concurrency,
        rank_concurrency=args.rank_concurrency,
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    cfg.out.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    wall = time.monotonic()
    signal.signal(signal.SIGTERM, _terminate)
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    from bench.runner import Progress, run_phases, use_bench_env

    say = Progress()
    use_bench_env()
    from bench.store import database_ensure, database_migrate, migrations_pending, state_reset

    if database_ensure():
        say("created database leaderboard_bench")
    import django

    django.setup()
    if migrations_pending():
        say("migrating leaderboard_bench")
        database_migrate()
    state_reset()

    from bench.stack import Stack

    stack = Stack(cfg, cfg.out / "logs")
    atexit.register(stack.stop)
    try:
        raw = run_phases(cfg, stack, say)
    finally:
        say("stopping the web tier and workers")
        stack.stop()

    from bench import plot, report
    from bench.machine import machine_info

    machine = machine_info()
    machine["load_average_at_start"] = load_at_start
    figs = report.build_figures(cfg.as_dict(), raw)
    document = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "wall_seconds": time.monotonic() - wall,
        "mode": "quick" if cfg.quick else "full",
        "machine": machine,
        "config": cfg.as_dict(),
        "stack": {
            "web": (
                f"HAProxy (bin/lb) in front of granian (bin/web): the score front door (ASGI, "
                f"{cfg.web_workers} workers) and Django (WSGI, {cfg.web_workers} workers x {cfg.web_threads} threads)"
            ),
            "floors": f"bare WSGI app (bench/floor_app.py) under granian and under gunicorn gthread, "
            f"{cfg.web_workers} workers x {cfg.web_threads} threads each, started for their phase only",
            "ingest": f"celery worker, prefork, {cfg.ingest_concurrency} processes",
            "rank": f"celery worker, prefork, {cfg.rank_concurrency} processes",
            "naive": f"celery worker, prefork, {cfg.naive_concurrency} processes (naive baseline only)",
            "beat": "not running (periodic reconcile is off the hot path and would mask a stale top-N)",
            "client": "single-event request rates and the floors: wrk (C, 2 threads, bench/wrk_post.lua, a "
            "distinct user per request); batches, reads and probes: one asyncio process (aiohttp); "
            "keep-alive connections = concurrency",
            "commands": raw.get("processes", {}),
        },
        "raw": raw,
    }
    json_path, png_path = cfg.out / "latest.json", cfg.out / "latest.png"
    report.write_json(json_path, document, figs)
    title = (
        f"leaderboard benchmark ({document['mode']}) {document['started_at']} - {machine['cpu_model']}, "
        f"{machine['cores']} cores, {machine['memory_gib']} GiB - commit {(machine['git_commit'] or '?')[:10]}"
    )
    plot.plot(png_path, raw, title)
    print(f"\n{title}")
    print(f"web: {document['stack']['web']}; workers: ingest {cfg.ingest_concurrency}, rank {cfg.rank_concurrency}")
    print(f"load average (1/5/15 min) at start {load_at_start}, at end {machine['load_average_1_5_15']}")
    print(report.table(figs))
    print(f"\nwrote {json_path} and {png_path} in {document['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
