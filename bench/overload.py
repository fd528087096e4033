"""The overload run (issue 12): offer 2x then 3x the max sustained rate, open loop, and watch admission control.

Load comes from two API keys: a flooder sending most of it and a steady key sending the
rest, so fair share shows (the flooder should get the 429s). Arrivals are paced (an arrival
rate, not a closed loop of clients) and a refused request (503/429) is NOT resent, so the
offered load stays what it is whatever the service answers. Every 202 goes into a ledger
(``overload-ledger.jsonl`` next to the JSON: each accepted request's event ids); after the
drain the board's total must equal the ledger's points: nothing accepted lost or doubled.

Meanwhile a thread samples the backlog admission control sees (the two Redis counters,
events published less events applied) and the queue depths every 0.5 s, and a probe every
0.5 s measures freshness: a probe POST that gets 503/429 is retried until it gets a 202
and its freshness counts from that 202. After the overload stops the probes go on until
freshness is back under the target (a window of consecutive probes all under it) or for
at most ``overload_recovery_max_s`` seconds.
"""

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.load import Call, send, session
from bench.stats import summary
from bench.workload import USER_FORMAT

# Freshness must be back under this (the target after an overload) ...
RECOVERY_FRESHNESS_MS = 250.0
# ... for this many consecutive probes (2 s at one probe per 0.5 s): their p99 is their max.
RECOVERY_WINDOW = 4
PROBE_INTERVAL_S = 0.5
SAMPLE_INTERVAL_S = 0.5
# A refused probe is resent this soon (its freshness counts from its 202, not its first try).
_PROBE_RETRY_S = 0.05
# A probe not at the head of the board within this long counts as missed.
_PROBE_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.01
# Probe scores start far above anything the load can reach, so probes hold the top ranks.
_PROBE_BASE = 10**9
_TOP_LIMIT = 100
# Connections of the load; more than the requests in flight at 3x, so pacing stays open loop.
_CONNECTIONS = 64


@dataclass(frozen=True)
class Sender:
    name: str
    tag: str  # in each event id: which key sent it
    share: float  # of the offered events
    headers: dict[str, str]


@dataclass(frozen=True)
class Phase:
    name: str
    multiple: float
    start: float  # monotonic
    end: float


@dataclass
class Tally:
    """One key's requests in one phase."""

    statuses: Counter = field(default_factory=Counter)
    offered_events: int = 0
    accepted_events: int = 0
    accepted_points: int = 0
    # Requests without an answer (a transport error): applied or not, nobody knows.
    unknown_points: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class Probe:
    index: int
    user: str
    sent: float  # monotonic, first try
    tries: int = 0
    accepted: float | None = None  # the 202
    seen: float | None = None  # at the head of GET /top

    @property
    def freshness_ms(self) -> float | None:
        if self.accepted is None or self.seen is None:
            return None
        return (self.seen - self.accepted) * 1000.0


class BacklogSampler(threading.Thread):
    """Every 0.5 s (or ``interval``): published less applied events (what admission control
    reads) and the queues' depths."""

    def __init__(self, t0: float, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        self.t0 = t0
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def run(self) -> None:
        from django.conf import settings

        from bench.config import PREFIX
        from bench.store import work_queue_names
        from leaderboard_project.celery import app as celery_app
        from rankings.cache import redis_client
        from scores.admission import _counter_key
        from tasks.queues import ingest_queue_name

        ingest = [ingest_queue_name(PREFIX, n) for n in range(settings.LEADERBOARD_INGEST_PARTITIONS)]
        others = [name for name in work_queue_names() if name not in ingest]
        keys = [_counter_key("published"), _counter_key("applied")]
        with celery_app.connection_for_write() as conn:
            channel = conn.default_channel
            while not self._stop_event.is_set():
                at = time.monotonic()
                try:
                    published, applied = (int(v or 0) for v in redis_client().mget(keys))
                    depths = [channel.queue_declare(queue=name, passive=True).message_count for name in ingest]
                    rank = sum(channel.queue_declare(queue=name, passive=True).message_count for name in others)
                except Exception:  # noqa: BLE001 - a missed sample is a gap in the plot, not a failed run
                    self.errors += 1
                else:
                    self.samples.append(
                        {
                            "t": round(at - self.t0, 3),
                            "events": published - applied,
                            "ingest_messages": sum(depths),
                            "rank_messages": rank,
                        }
                    )
                self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - at)))


class OverloadRun:
    """The asyncio side: paced senders per key and phase, probes, one poller of the board's top."""

    def __init__(
        self,
        *,
        scores_url: str,
        top_url: str,
        senders: list[Sender],
        probe_headers: dict[str, str],
        max_rate: float,
        cfg: Any,
        rng: np.random.Generator,
    ) -> None:
        self.scores_url = scores_url
        self.top_url = top_url
        self.senders = senders
        self.probe_headers = {"Content-Type": "application/json", **probe_headers}
        self.max_rate = max_rate
        self.cfg = cfg
        self.rng = rng
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.ledger: list[dict[str, Any]] = []
        self.probes: list[Probe] = []
        self.probe_statuses: Counter = Counter()
        self.recovered_at: float | None = None
        self.phases: list[Phase] = []
        self.stop_at = 0.0
        self._seq = 0

    def tally(self, phase: str, sender: str) -> Tally:
        return self.tallies.setdefault((phase, sender), Tally())

    def _body(self, prefix: str, size: int) -> tuple[bytes, int]:
        users = self.rng.integers(0, self.cfg.user_space, size=size)
        points = self.rng.integers(1, self.cfg.points_max + 1, size=size)
        events = ",".join(
            f'{{"user_id":"{USER_FORMAT.format(u)}","points":{p},"event_id":"{prefix}{i:03d}"}}'
            for i, (u, p) in enumerate(zip(users.tolist(), points.tolist(), strict=True))
        )
        return f'{{"events":[{events}]}}'.encode(), int(points.sum())

    async def _send_batch(self, client: aiohttp.ClientSession, phase: Phase, sender: Sender, due: float) -> None:
        size = self.cfg.batch_size
        self._seq += 1
        prefix = f"ov{phase.name}{sender.tag}{self._seq:07d}-"
        body, points = self._body(prefix, size)
        tally = self.tally(phase.name, sender.name)
        tally.offered_events += size
        headers = {"Content-Type": "application/json", **sender.headers}
        status, raw = await send(client, Call("POST", self.scores_url, body, size, points), headers)
        answered = time.monotonic()
        # From the arrival's due time: a request held back in the client counts as waiting.
        tally.latencies_ms.append((answered - due) * 1000.0)
        if status == 429 and b"share" not in raw:
            status = "429 throttled"  # the per-key rate limit, not fair share
        tally.statuses[status] += 1
        if status == 202:
            tally.accepted_events += size
            tally.accepted_points += points
            self.ledger.append(
                {
                    "phase": phase.name,
                    "key": sender.name,
                    "event_ids": f"{prefix}000..{prefix}{size - 1:03d}",
                    "events": size,
                    "points": points,
                    "accepted_s": round(answered - self.phases[0].start, 3),
                }
            )
        elif not isinstance(status, int):
            tally.unknown_points += points

    async def _offer(self, client: aiohttp.ClientSession, sender: Sender, tasks: list[asyncio.Task]) -> None:
        """Arrivals of one key, evenly paced at its share of each phase's rate; never resent."""
        for phase in self.phases:
            rate = phase.multiple * self.max_rate * sender.share
            gap = self.cfg.batch_size / rate
            n = 0
            while (due := phase.start + n * gap) < phase.end:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(self._send_batch(client, phase, sender, due)))
                n += 1

    async def _probe(self, client: aiohttp.ClientSession, probe: Probe) -> None:
        body = json.dumps({"user_id": probe.user, "points": _PROBE_BASE + probe.index, "event_id": probe.user})
        call = Call("POST", self.scores_url, body.encode(), 1, _PROBE_BASE + probe.index)
        while time.monotonic() - probe.sent < _PROBE_TIMEOUT_S:
            probe.tries += 1
            status, _ = await send(client, call, self.probe_headers)
            self.probe_statuses[status] += 1
            if status == 202:
                probe.accepted = time.monotonic()
                return
            # Refused (or no answer): resent with the same event id, so it applies once at most.
            await asyncio.sleep(_PROBE_RETRY_S)

    def _recovered(self) -> bool:
        """A window of consecutive probes sent after the overload, each seen within the target."""
        after = [p for p in self.probes if p.sent >= self.stop_at]
        for start in range(len(after) - RECOVERY_WINDOW + 1):
            window = after[start : start + RECOVERY_WINDOW]
            fresh = [p.freshness_ms for p in window]
            if all(f is not None and f < RECOVERY_FRESHNESS_MS for f in fresh):
                self.recovered_at = window[0].accepted
                return True
        return False

    async def _poll(self, client: aiohttp.ClientSession, done: asyncio.Event) -> None:
        """One reader of the board's top for every probe in flight (a reader per probe would load the web tier)."""
        while not done.is_set():
            waiting = {p.user: p for p in self.probes if p.accepted is not None and p.seen is None}
            if waiting:
                status, raw = await send(client, Call("GET", self.top_url), {})
                now = time.monotonic()
                if status == 200:
                    for entry in json.loads(raw)["entries"]:
                        if (probe := waiting.get(entry["user_id"])) is not None:
                            probe.seen = now
            await asyncio.sleep(_POLL_INTERVAL_S)

    async def run(self) -> None:
        seconds = self.cfg.overload_seconds
        t0 = time.monotonic() + 0.2  # the senders are scheduled before the first arrival
        self.phases = [
            Phase(f"{m:g}x", m, t0 + i * seconds, t0 + (i + 1) * seconds)
            for i, m in enumerate(self.cfg.overload_multiples)
        ]
        self.stop_at = self.phases[-1].end
        give_up = self.stop_at + self.cfg.overload_recovery_max_s
        sends: list[asyncio.Task] = []
        probes: list[asyncio.Task] = []
        done = asyncio.Event()
        async with session(_CONNECTIONS) as client, session(4) as probe_client:
            offers = [asyncio.create_task(self._offer(client, sender, sends)) for sender in self.senders]
            poller = asyncio.create_task(self._poll(probe_client, done))
            index = 0
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            while (now := time.monotonic()) < give_up and not (now >= self.stop_at and self._recovered()):
                probe = Probe(index, f"ovprobe-{index:05d}", now)
                self.probes.append(probe)
                probes.append(asyncio.create_task(self._probe(probe_client, probe)))
                index += 1
                await asyncio.sleep(max(0.0, t0 + index * PROBE_INTERVAL_S - time.monotonic()))
            await asyncio.gather(*offers)
            await asyncio.gather(*sends, *probes)
            # Probes accepted but not seen yet: wait for them up to their own timeout.
            while any(p.accepted is not None and p.seen is None for p in self.probes) and any(
                time.monotonic() - p.accepted < _PROBE_TIMEOUT_S
                for p in self.probes
                if p.accepted is not None and p.seen is None
            ):
                await asyncio.sleep(0.05)
            done.set()
            await poller
        if self.recovered_at is None:
            self._recovered()


def _keys() -> tuple[list[Sender], dict[str, str]]:
    from scores.models import ApiKey

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {ApiKey.generate(name=name)[1]}"}

    # The flooder sends 80%: over 1.5x an equal split, so fair share holds it back first.
    senders = [Sender("flooder", "f", 0.8, bearer("bench-flooder")), Sender("steady", "s", 0.2, bearer("bench-steady"))]
    return senders, bearer("bench-probe")


def _applied_event_ids(board_id: int) -> int:
    """Event ids recorded for the board: each applied event once, whatever the redeliveries."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM scores_processedevent WHERE leaderboard_id = %s", [board_id])
        return int(cursor.fetchone()[0])


def _phase_result(run: OverloadRun, phase: Phase, samples: list[dict[str, float]], t0: float) -> dict[str, Any]:
    by_key = {}
    total = Tally()
    for sender in run.senders:
        tally = run.tally(phase.name, sender.name)
        requests = sum(tally.statuses.values())
        by_key[sender.name] = {
            "share_of_offer": sender.share,
            "requests": requests,
            "statuses": {str(k): v for k, v in sorted(tally.statuses.items(), key=str)},
            "offered_events": tally.offered_events,
            "accepted_events": tally.accepted_events,
            "share_429": tally.statuses[429] / requests if requests else None,
            "latency_ms": summary(tally.latencies_ms),
        }
        total.statuses.update(tally.statuses)
        total.offered_events += tally.offered_events
        total.accepted_events += tally.accepted_events
        total.accepted_points += tally.accepted_points
        total.unknown_points += tally.unknown_points
        total.latencies_ms += tally.latencies_ms
    requests = sum(total.statuses.values())
    seconds = phase.end - phase.start
    other = {str(k): v for k, v in total.statuses.items() if k not in (202, 503, 429)}
    failures = sum(v for k, v in total.statuses.items() if not isinstance(k, int) or (k >= 500 and k != 503))
    probes = [p for p in run.probes if phase.start <= p.sent < phase.end]
    fresh = [f for p in probes if (f := p.freshness_ms) is not None]
    window = [s for s in samples if phase.start - t0 <= s["t"] < phase.end - t0]
    return {
        "multiple": phase.multiple,
        "seconds": seconds,
        "target_events_per_s": phase.multiple * run.max_rate,
        "offered_events_per_s": total.offered_events / seconds,
        "accepted_events_per_s": total.accepted_events / seconds,
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(total.statuses.items(), key=str)},
        "shares": {
            "202": total.statuses[202] / max(1, requests),
            "503": total.statuses[503] / max(1, requests),
            "429": total.statuses[429] / max(1, requests),
            "other": sum(other.values()) / max(1, requests),
        },
        # 5xx other than admission control's 503, and requests that got no answer at all.
        "failures": failures,
        "by_key": by_key,
        "latency_ms": summary(total.latencies_ms),
        "freshness_ms": summary(fresh),
        "freshness_samples_ms": fresh,
        "probes": len(probes),
        "probes_missed": len(probes) - len(fresh),
        "probe_admit_wait_ms": summary([(p.accepted - p.sent) * 1000.0 for p in probes if p.accepted is not None]),
        "backlog_max_events": max((s["events"] for s in window), default=None),
        "ingest_messages_max": max((s["ingest_messages"] for s in window), default=None),
    }


def overload_phase(ctx: Any, max_rate: float, say: Any) -> dict[str, Any]:
    """Offer each multiple of ``max_rate`` for ``overload_seconds``, then measure recovery and the totals."""
    from django.conf import settings

    from bench.boards import board_make
    from bench.store import board_sum, wait_for_sum

    cfg = ctx.cfg
    board = board_make("overload")
    senders, probe_headers = _keys()
    run = OverloadRun(
        scores_url=ctx.api(board.slug, "scores"),
        top_url=ctx.api(board.slug, f"top?limit={_TOP_LIMIT}"),
        senders=senders,
        probe_headers=probe_headers,
        max_rate=max_rate,
        cfg=cfg,
        rng=ctx.rng,
    )
    t0 = time.monotonic()
    sampler = BacklogSampler(t0)
    sampler.start()
    try:
        asyncio.run(run.run())
        probe_points = sum(_PROBE_BASE + p.index for p in run.probes if p.accepted is not None)
        accepted_points = sum(entry["points"] for entry in run.ledger) + probe_points
        accepted_events = sum(entry["events"] for entry in run.ledger) + sum(p.accepted is not None for p in run.probes)
        drain_from = time.monotonic()
        applied_at = wait_for_sum(board.id, accepted_points, drain_from + cfg.drain_timeout, interval=0.1)
        idle = ctx.stack.wait_quiet(cfg.drain_timeout)
    finally:
        sampler.stop()
    applied_points = board_sum(board.id)
    applied_events = _applied_event_ids(board.id)
    unknown_points = sum(t.unknown_points for t in run.tallies.values())
    ledger_path = Path(cfg.out) / "overload-ledger.jsonl"
    ledger_path.write_text("".join(json.dumps(entry) + "\n" for entry in run.ledger))

    stop_s = run.stop_at - t0
    phases = {phase.name: _phase_result(run, phase, sampler.samples, t0) for phase in run.phases}
    recovery_probes = [p for p in run.probes if p.sent >= run.stop_at]
    recovered_s = None if run.recovered_at is None else run.recovered_at - run.stop_at
    probed_s = max((p.sent for p in recovery_probes), default=run.stop_at) - run.stop_at
    result = {
        "max_sustained_events_per_s": max_rate,
        "bound_events": settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS,
        "check_seconds": settings.LEADERBOARD_ADMISSION_CHECK_SECONDS,
        "batch_size": cfg.batch_size,
        "overload_seconds": cfg.overload_seconds,
        "keys": {s.name: s.share for s in senders},
        "phases": phases,
        # Seconds from the start of the run (the backlog samples' clock).
        "phase_windows": {p.name: [round(p.start - t0, 3), round(p.end - t0, 3)] for p in run.phases},
        "stop_s": stop_s,
        "probes": [
            {
                "sent_s": round(p.sent - t0, 3),
                "accepted_s": None if p.accepted is None else round(p.accepted - t0, 3),
                "tries": p.tries,
                "freshness_ms": p.freshness_ms,
            }
            for p in run.probes
        ],
        "recovery": {
            "target_ms": RECOVERY_FRESHNESS_MS,
            "window_probes": RECOVERY_WINDOW,
            "max_s": cfg.overload_recovery_max_s,
            "recovered_s": recovered_s,
            "probed_s": probed_s,
            "probes": [
                {"sent_s": round(p.sent - run.stop_at, 3), "freshness_ms": p.freshness_ms} for p in recovery_probes
            ],
        },
        "probe_statuses": {str(k): v for k, v in sorted(run.probe_statuses.items(), key=str)},
        "backlog": sampler.samples,
        "backlog_sample_errors": sampler.errors,
        "exactly_once": {
            "accepted_requests": len(run.ledger),
            "accepted_events": accepted_events,
            "accepted_points": accepted_points,
            "applied_events": applied_events,
            "applied_points": applied_points,
            "unknown_points": unknown_points,
            "drained": applied_at is not None,
            "drain_s": (applied_at or time.monotonic()) - drain_from,
            "idle_s": None if idle is None else idle - drain_from,
        },
        "ledger": str(ledger_path),
    }
    for name, data in phases.items():
        say(
            f"overload {name}: offered {data['offered_events_per_s']:.0f} events/s, accepted "
            f"{data['accepted_events_per_s']:.0f}; 202 {data['shares']['202']:.0%}, 503 {data['shares']['503']:.0%}, "
            f"429 {data['shares']['429']:.0%} (flooder {data['by_key']['flooder']['statuses'].get('429', 0)}, "
            f"steady {data['by_key']['steady']['statuses'].get('429', 0)}); backlog max {data['backlog_max_events']}; "
            f"freshness p99 {data['freshness_ms']['p99']:.0f} ms (n={data['freshness_ms']['n']})"
        )
    eo = result["exactly_once"]
    recovery = f"not within {probed_s:.0f} s" if recovered_s is None else f"{recovered_s:.1f} s"
    say(
        f"overload recovery: {recovery}; "
        f"applied {eo['applied_points']} of {eo['accepted_points']} accepted points, "
        f"{eo['applied_events']} of {eo['accepted_events']} events"
    )
    return result
