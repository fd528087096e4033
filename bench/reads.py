"""Read-path benchmark: top-N, rank ranges and friends lookups against a real gunicorn.

Not part of ``make bench``: a focused run for the read endpoints, with the bare DRF GET
(``/bench/noop``) measured in the same run, on the same gunicorn, as the baseline.

Run it on your own database and Redis (the environment decides which), after seeding a
board, e.g.::

    LEADERBOARD_DB_NAME=lb_reads LEADERBOARD_REDIS_URL=redis://127.0.0.1:6379/8 \\
    LEADERBOARD_REDIS_PREFIX=lbreads LEADERBOARD_QUEUE_PREFIX=lbreads \\
        python manage.py reseed --leaderboard big --users 1000000
    (same environment) python -m bench.reads --board big --seconds 5

It reports p50/p99 at one connection and req/s at 16 for each read, the top-N beside
the bare GET, twice (rounds alternate so drift hits both alike), and the web workers' CPU
time per request ("us"), which other load on a shared machine blurs less than latency.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.load import Call, run_load
from bench.stack import free_port

ROOT = Path(__file__).resolve().parent.parent


def _prepare(slug: str) -> int:
    """Make sure the board's rank index and cached top-N are complete; return its users."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")
    django.setup()
    from rankings import cache
    from rankings.models import Leaderboard
    from rankings.services import index_rebuild, topn_rebuild
    from scores.models import Score

    board = Leaderboard.objects.get(slug=slug)
    period = board.current_period()
    client = cache.redis_client()
    if not cache.index_is_ready(client, board.id, period):
        print(f"rebuilding the rank index of {slug} ...", flush=True)
        cache.index_reset(client, board.id, period)
        index_rebuild(leaderboard=board, period=period)
    topn_rebuild(leaderboard=board, period=period)
    return Score.objects.filter(leaderboard=board, period=period).count()


@contextmanager
def _index_not_ready(slug: str) -> Iterator[None]:
    """The rank index without its ready flag, as after a Redis loss, so reads use the
    database; a repair counts as already asked for, so nothing rebuilds it meanwhile."""
    from rankings import cache, redis_keys
    from rankings.models import Leaderboard

    board = Leaderboard.objects.get(slug=slug)
    period = board.current_period()
    client = cache.redis_client()
    client.set(redis_keys.repair_asked_key(board.id, period), "1", ex=3600)
    client.delete(redis_keys.ready_key(board.id, period))
    try:
        yield
    finally:
        # Nothing wrote to the board meanwhile: the index is still complete.
        cache.index_mark_ready(client, board.id, period)
        client.delete(redis_keys.repair_asked_key(board.id, period))


def _start_web(strategy: str, port: int, workers: int, threads: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leaderboard_project.settings",
        "LEADERBOARD_BENCH_ENDPOINTS": "1",
        "LEADERBOARD_RANKING_STRATEGY": strategy,
    }
    argv = [sys.executable, "-m", "gunicorn", "leaderboard_project.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads)]
    argv += ["--log-level", "warning"]
    (ROOT / ".run").mkdir(exist_ok=True)
    log = open(ROOT / ".run" / "bench-reads-web.log", "a")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/noop", timeout=5).read()
            return proc
        except OSError:  # refused while booting, or booted but slow to answer
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("gunicorn did not answer within 60 s")


_web_pid: list[int] = []  # gunicorn's master, once started


def _web_cpu_seconds() -> float:
    """CPU time (user + system) of gunicorn's workers so far: a cost per request that the
    other load on a shared machine does not blur the way it blurs latencies."""
    if not _web_pid:
        return 0.0
    master = _web_pid[0]
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    total = 0
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _load(calls: list[Call], concurrency: int, seconds: float, ok_status: int = 200, headers=None) -> dict[str, Any]:
    cpu0 = _web_cpu_seconds()
    result = asyncio.run(
        run_load(calls, concurrency=concurrency, duration=seconds, ok_status=ok_status, headers=headers)
    ).as_dict()
    web_cpu = _web_cpu_seconds() - cpu0
    lat = result["latency_ms"]
    return {
        "p50_ms": round(lat["p50"], 2),
        "p99_ms": round(lat["p99"], 2),
        "req_per_s": round(result["ok_per_s"]),
        "web_cpu_us_per_req": round(1e6 * web_cpu / max(1, result["requests"])),
        "statuses": result["statuses"],
    }


def _etag_of(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers.get("ETag") or ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="big")
    parser.add_argument("--strategy", default="merge_tree", choices=["merge_tree", "sorted_set"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--depth", type=int, default=500_000)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--top-only", action="store_true", help="only the top-N and the bare GET")
    parser.add_argument("--fallback", action="store_true", help="also time the database fallbacks (index not ready)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()

    users = _prepare(args.board)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/v1/leaderboards/{args.board}"
    rng = random.Random(7)
    noop = [Call("GET", f"{base}/bench/noop")]
    top = [Call("GET", f"{api}/top?limit=10")]
    depth = min(args.depth, max(1, users - 100))
    ranks = [Call("GET", f"{api}/ranks?start={depth + rng.randrange(100)}&count=100") for _ in range(200)]
    friends = [
        Call("GET", f"{api}/users?ids=" + ",".join(f"user-{rng.randrange(users):08d}" for _ in range(100)))
        for _ in range(200)
    ]
    one_user = [Call("GET", f"{api}/users/user-{rng.randrange(users):08d}") for _ in range(200)]

    web = _start_web(args.strategy, port, args.web_workers, args.web_threads)
    _web_pid.append(web.pid)
    figures: dict[str, Any] = {"board": args.board, "users": users, "strategy": args.strategy, "rounds": []}
    try:
        _load(noop + top, 4, 1.0)  # warm every worker's connections and board copies
        for n in range(args.rounds):
            row: dict[str, Any] = {}
            row["bare_get_c1"] = _load(noop, 1, args.seconds)
            row["top_c1"] = _load(top, 1, args.seconds)
            row["bare_get_c16"] = _load(noop, 16, args.seconds)
            row["top_c16"] = _load(top, 16, args.seconds)
            row["top_vs_bare_c16"] = round(row["top_c16"]["req_per_s"] / max(1, row["bare_get_c16"]["req_per_s"]), 2)
            if args.top_only:
                figures["rounds"].append(row)
                continue
            etag = _etag_of(top[0].url)
            if etag:
                row["top_304_c1"] = _load(top, 1, args.seconds, ok_status=304, headers={"If-None-Match": etag})
            row["ranks_depth_c1"] = _load(ranks, 1, args.seconds)
            row["friends_100_c1"] = _load(friends, 1, args.seconds)
            row["user_rank_c1"] = _load(one_user, 1, args.seconds)
            figures["rounds"].append(row)
            print(f"round {n + 1}: {json.dumps(row, indent=1)}", flush=True)
        if args.fallback:
            with _index_not_ready(args.board):
                figures["fallback"] = {
                    "ranks_depth_c1": _load(ranks, 1, args.seconds),
                    "friends_100_c1": _load(friends, 1, args.seconds),
                }
            print(f"database fallback: {json.dumps(figures['fallback'])}", flush=True)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    print(f"{args.board}: {users} users, strategy {args.strategy}, rank depth {depth}")
    for name in figures["rounds"][0]:
        values = [r[name] for r in figures["rounds"]]
        if isinstance(values[0], dict):
            cells = (
                f"p50 {v['p50_ms']} p99 {v['p99_ms']} ms, {v['req_per_s']}/s, {v['web_cpu_us_per_req']} us"
                for v in values
            )
            print(f"{name:18s} " + " | ".join(cells))
        else:
            print(f"{name:18s} " + " | ".join(str(v) for v in values))


if __name__ == "__main__":
    main()
