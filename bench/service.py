"""The service's figures by aiohttp: end-to-end ingest, freshness, top-N and user-rank reads.

Single-event request rates are wrk's (bench/front_door.py).
"""

import asyncio
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.config import BenchConfig
from bench.load import Call, LoadResult, run_load, send, session
from bench.stack import Stack
from bench.stats import summary
from bench.store import boards_sums, queue_depth, wait_for_sum
from bench.workload import USER_FORMAT, Sampler, batch_calls, get_calls, single_calls, uniform

# Probe scores start far above anything the background load can reach.
PROBE_BASE = 10**9
_PROBE_TIMEOUT = 10.0
_POLL_INTERVAL = 0.005


@dataclass
class Ctx:
    cfg: BenchConfig
    stack: Stack
    write_headers: dict[str, str]
    rng: np.random.Generator

    def api(self, slug: str, tail: str) -> str:
        return f"{self.stack.base_url}/api/v1/leaderboards/{slug}/{tail}"

    @property
    def noop(self) -> str:
        return f"{self.stack.base_url}/bench/noop"

    @property
    def write_key(self) -> str:
        return self.write_headers["Authorization"].removeprefix("Bearer ")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def top_matches_database(ctx: Ctx, board: Any, limit: int = 10) -> bool:
    """The served top-N equals the database's ORDER BY … LIMIT (user and score, in order)."""
    from rankings.selectors import db_top_rows

    try:
        served = [(e["user_id"], e["score"]) for e in _get_json(ctx.api(board.slug, f"top?limit={limit}"))["entries"]]
    except (OSError, ValueError, KeyError):  # an error answer (urllib's HTTPError is an OSError) is no match
        return False
    exact = [(r.user_id, r.score) for r in db_top_rows(leaderboard=board, period=board.current_period(), limit=limit)]
    return served == exact


def _wait_tops(ctx: Ctx, boards: list[Any], deadline: float) -> float | None:
    """Poll until every board's served top-N has equalled the database's once (all events
    are applied by then, so a board that matched stays matched)."""
    pending = list(boards)
    while True:
        pending = [board for board in pending if not top_matches_database(ctx, board)]
        if not pending:
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def e2e_batched(ctx: Ctx, board: Any, sampler: Sampler, concurrency: int) -> dict[str, Any]:
    """Batches sent for the phase; events/s from the first send until all are applied and the top-N shows them."""
    return e2e_boards(ctx, [board], sampler, concurrency)


def e2e_boards(
    ctx: Ctx, boards: list[Any], sampler: Sampler, concurrency: int, metadata_bytes: int = 0
) -> dict[str, Any]:
    """Batches sent for the phase, each request to one board drawn uniformly; events/s from the
    first send until every event is applied, every board's top-N shows them and the pipeline is
    idle. ``metadata_bytes``: each event carries a display name and metadata of that size."""
    from leaderboard_project.celery import app as celery_app

    cfg = ctx.cfg
    batches = cfg.max_events_per_run // cfg.batch_size + 1
    calls = batch_calls(
        [ctx.api(board.slug, "scores") for board in boards],
        sampler,
        batches=min(batches, 200),
        batch_size=cfg.batch_size,
        points_max=cfg.points_max,
        rng=ctx.rng,
        metadata_bytes=metadata_bytes,
    )
    ids = [board.id for board in boards]
    before = boards_sums(ids)
    load = asyncio.run(
        run_load(
            calls,
            concurrency=concurrency,
            duration=cfg.duration,
            headers=ctx.write_headers,
            ok_status=202,
            max_events=cfg.max_events_per_run,
        )
    )
    backlog = queue_depth(celery_app)
    deadline = load.finished + cfg.drain_timeout
    applied = wait_for_sum(ids, sum(before.values()) + load.accepted_points, deadline)
    after = boards_sums(ids)
    touched = [board for board in boards if after[board.id] != before[board.id]]
    visible = _wait_tops(ctx, touched, deadline) if applied is not None else None
    # Events that do not change the top-N still feed the rank index: the run ends when the
    # whole pipeline is idle too, or a backlog would grow without bound at this rate.
    idle = ctx.stack.wait_quiet(max(1.0, deadline - time.monotonic())) if visible is not None else None
    complete = visible is not None and idle is not None
    end = max(visible, idle) if complete else time.monotonic()  # type: ignore[type-var]
    gained = sum(boards_sums(ids).values()) - sum(before.values())
    fraction = 1.0 if applied is not None else gained / max(1, load.accepted_points)
    if not complete:
        ctx.stack.wait_quiet(cfg.drain_timeout)  # the next phase starts on idle workers

    def since(t: float | None) -> float | None:
        return None if t is None else t - load.started

    return {
        "http": load.as_dict(),
        "boards": len(boards),
        "boards_with_events": len(touched),
        # The board's id in the workers' logs (root runs are counted per board).
        "board_id": ids[0] if len(ids) == 1 else None,
        "queued_after_send": backlog,
        "applied_s": since(applied),
        "visible_s": since(visible),
        "idle_s": since(idle),
        "seconds": end - load.started,
        "complete": complete,
        "events_per_s": fraction * load.accepted_events / (end - load.started),
    }


def http_load(ctx: Ctx, calls: list[Call], concurrency: int, duration: float, ok_status: int = 200) -> LoadResult:
    return asyncio.run(
        run_load(calls, concurrency=concurrency, duration=duration, headers=ctx.write_headers, ok_status=ok_status)
    )


def noop_post(ctx: Ctx, concurrency: int) -> LoadResult:
    cfg = ctx.cfg
    calls = single_calls(ctx.noop, uniform(cfg.user_space), count=4096, points_max=cfg.points_max, rng=ctx.rng)
    return http_load(ctx, calls, concurrency, cfg.duration, ok_status=202)


def _ids(boards: Any) -> list[int]:
    return [board.id for board in boards] if isinstance(boards, list) else [boards.id]


def settle(ctx: Ctx, boards: Any, expected_sum: int) -> dict[str, Any]:
    """Wait (bounded) until the events of a board (or a list of boards) are applied; what is
    left then is purged."""
    from bench.store import queues_purge
    from leaderboard_project.celery import app as celery_app

    started = time.monotonic()
    applied = wait_for_sum(_ids(boards), expected_sum, started + ctx.cfg.drain_timeout, interval=0.1)
    if applied is None:
        queues_purge(celery_app)
    quiet = ctx.stack.wait_quiet(ctx.cfg.drain_timeout)
    return {
        "drained": applied is not None,
        "seconds": (applied or time.monotonic()) - started,
        "idle_after_s": None if quiet is None else quiet - started,
    }


def reads(ctx: Ctx, urls: list[str], concurrency: int, duration: float) -> dict[str, Any]:
    # One untimed read first: a cold cache or a phase's leftovers must not take a short
    # latency phase's whole budget (quick mode once measured a single 565 ms read).
    try:
        _get_json(urls[0])
    except (OSError, ValueError):  # an error answer shows in the timed phase's statuses
        pass
    load = http_load(ctx, get_calls(urls), concurrency, duration)
    return load.as_dict()


def live_page_polls(ctx: Ctx, board: Any, concurrency: int, duration: float) -> dict[str, Any]:
    """What an open live page costs: its conditional poll of /top (every 1 s; 304 while the
    top-N is unchanged) and its /activity read (every 2 s), each at full speed, and from
    them the cores 1,000 open pages take at those rates."""
    top_url = ctx.api(board.slug, "top?limit=10")
    with urllib.request.urlopen(top_url, timeout=5) as response:
        etag = response.headers["ETag"]
    polls = asyncio.run(
        run_load(
            get_calls([top_url]),
            concurrency=concurrency,
            duration=duration,
            headers={"If-None-Match": etag},
            ok_status=304,
        )
    ).as_dict()
    activity = reads(ctx, [ctx.api(board.slug, "activity")], concurrency, duration)
    cores = os.cpu_count() or 1
    # Each request's share of the machine while the load saturated it (an upper bound).
    poll_core_ms = cores * 1000 / polls["ok_per_s"] if polls["ok_per_s"] else None
    activity_core_ms = cores * 1000 / activity["ok_per_s"] if activity["ok_per_s"] else None
    per_page = None if poll_core_ms is None or activity_core_ms is None else poll_core_ms + activity_core_ms / 2
    return {
        "etag": etag,
        "poll_304": polls,
        "activity": activity,
        "poll_core_ms": poll_core_ms,
        "activity_core_ms": activity_core_ms,
        # core-ms per second per page, x 1,000 pages / 1,000 ms = cores.
        "cores_for_1000_pages": per_page,
    }


def user_urls(ctx: Ctx, board: Any, users: int, count: int = 2000) -> list[str]:
    picks = ctx.rng.integers(0, users, size=count)
    return [ctx.api(board.slug, f"users/{USER_FORMAT.format(u)}?around=5") for u in picks]


# A friends board as a game asks for it: 100 ids (the API's maximum) in one request.
FRIENDS_PER_LOOKUP = 100
RANK_RANGE_COUNT = 100


def rank_range_urls(ctx: Ctx, board: Any, users: int, count: int = 500) -> list[str]:
    """Pages of 100 ranks starting around the middle of the board (depth users / 2)."""
    depth = users // 2
    starts = ctx.rng.integers(max(1, depth - 5_000), depth + 5_000, size=count)
    return [ctx.api(board.slug, f"ranks?start={s}&count={RANK_RANGE_COUNT}") for s in starts]


def friends_urls(ctx: Ctx, board: Any, users: int, count: int = 500) -> list[str]:
    """Lookups of 100 random users of the board each."""
    urls = []
    for _ in range(count):
        ids = ",".join(USER_FORMAT.format(u) for u in ctx.rng.integers(0, users, size=FRIENDS_PER_LOOKUP))
        urls.append(ctx.api(board.slug, f"users?ids={ids}"))
    return urls


async def _freshness(ctx: Ctx, board: Any, events_per_s: float, spread: list[Any]) -> dict[str, Any]:
    cfg = ctx.cfg
    background = batch_calls(
        [ctx.api(other.slug, "scores") for other in spread],
        uniform(cfg.user_space),
        batches=200,
        batch_size=cfg.batch_size,
        points_max=cfg.points_max,
        rng=ctx.rng,
    )
    stop = asyncio.Event()
    load_task = asyncio.create_task(
        run_load(
            background,
            concurrency=4,
            duration=cfg.freshness_probes * _PROBE_TIMEOUT + 10,
            headers=ctx.write_headers,
            ok_status=202,
            events_per_s=events_per_s,
            stop=stop,
        )
    )
    await asyncio.sleep(min(1.0, cfg.duration / 3))
    probes = Probes(ctx, board)
    try:
        async with session(2) as client:
            for _ in range(cfg.freshness_probes):
                await probes.probe(client)
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        load = await load_task
    return {
        "target_events_per_s": events_per_s,
        "background": load.as_dict(),
        **probes.as_dict(),
        "points": load.accepted_points + probes.points,
    }


class Probes:
    """Freshness probes of one board, one at a time: a probe POSTs a score above everything
    before it, then polls GET /top?limit=1 until its user is at the head; its freshness is
    the time from its 202 to that read."""

    def __init__(self, ctx: Ctx, board: Any) -> None:
        self.scores_url = ctx.api(board.slug, "scores")
        self.top_url = ctx.api(board.slug, "top?limit=1")
        self.headers = {"Content-Type": "application/json", **ctx.write_headers}
        self.samples: list[float] = []
        self.post_ms: list[float] = []
        self.missed = 0
        self.points = 0  # of the probes answered 202

    async def probe(self, client: Any) -> None:
        i = len(self.post_ms)
        user = f"probe-{i:05d}"
        body = json.dumps({"user_id": user, "points": PROBE_BASE + i}).encode()
        posted = time.perf_counter()
        status, _ = await send(client, Call("POST", self.scores_url, body), self.headers)
        accepted = time.perf_counter()
        self.post_ms.append((accepted - posted) * 1000.0)
        if status != 202:
            self.missed += 1
            return
        self.points += PROBE_BASE + i
        while time.perf_counter() - accepted < _PROBE_TIMEOUT:
            status, raw = await send(client, Call("GET", self.top_url), self.headers)
            if status == 200 and (entries := json.loads(raw)["entries"]) and entries[0]["user_id"] == user:
                self.samples.append((time.perf_counter() - accepted) * 1000.0)
                return
            await asyncio.sleep(_POLL_INTERVAL)
        self.missed += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "probes": len(self.post_ms),
            "missed": self.missed,
            "ms": summary(self.samples),
            "probe_post_ms": summary(self.post_ms),
            "samples_ms": self.samples,
        }


def freshness(ctx: Ctx, board: Any, events_per_s: float, spread: list[Any] | None = None) -> dict[str, Any]:
    """Time from a probe's 202 to the probe at the head of GET /top, under background load
    (on the probed board, or spread over ``spread``, each request to one of those boards)."""
    boards = spread or [board]
    everyone = boards if board in boards else [board, *boards]
    before = sum(boards_sums(_ids(everyone)).values())
    result = asyncio.run(_freshness(ctx, board, events_per_s, boards))
    result["background_boards"] = len(boards)
    # The background backlog drains before the next phase.
    result["settle"] = settle(ctx, everyone, before + result.pop("points"))
    return result
