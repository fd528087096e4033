"""The load generator: many concurrent HTTP/1.1 keep-alive connections from one asyncio process (aiohttp)."""

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.stats import summary


@dataclass(frozen=True)
class Call:
    """One request to send; ``events``/``points`` are what a 2xx answer accepts."""

    method: str
    url: str
    body: bytes | None = None
    events: int = 0
    points: int = 0


@dataclass
class LoadResult:
    concurrency: int
    ok_status: int
    sent: int = 0
    ok: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    accepted_events: int = 0
    accepted_points: int = 0
    started: float = 0.0  # monotonic time of the first send
    finished: float = 0.0  # monotonic time of the last answer
    client_cpu_s: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.finished - self.started)

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.elapsed, 3),
            "requests": self.sent,
            "ok": self.ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "ok_per_s": self.ok / self.elapsed,
            "accepted_events": self.accepted_events,
            "accepted_events_per_s": self.accepted_events / self.elapsed,
            "latency_ms": summary(self.latencies_ms),
            "client_cpu_pct": 100.0 * self.client_cpu_s / self.elapsed,
        }


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def send(client: aiohttp.ClientSession, call: Call, headers: dict[str, str]) -> tuple[int | str, bytes]:
    try:
        async with client.request(call.method, call.url, data=call.body, headers=headers) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__, b""


async def run_load(
    calls: Sequence[Call],
    *,
    concurrency: int,
    duration: float,
    headers: dict[str, str] | None = None,
    ok_status: int = 200,
    max_events: int | None = None,
    events_per_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> LoadResult:
    """Send ``calls`` (cycled) on ``concurrency`` connections for ``duration`` seconds.

    ``max_events`` stops sending once that many events were sent; ``events_per_s`` paces the
    sends (open loop) instead of sending as fast as answers come back; ``stop`` ends early.
    """
    headers = {"Content-Type": "application/json", **(headers or {})}
    result = LoadResult(concurrency=concurrency, ok_status=ok_status)
    source = itertools.cycle(calls)
    slots = itertools.count()
    budget = [max_events if max_events is not None else -1]
    cpu0 = time.process_time()
    result.started = time.monotonic()
    deadline = result.started + duration

    async def worker(client: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            call = next(source)
            if budget[0] >= 0:
                if budget[0] < call.events:
                    return
                budget[0] -= call.events
            if events_per_s:
                due = result.started + next(slots) * max(call.events, 1) / events_per_s
                if due > deadline:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            t0 = time.perf_counter()
            status, _ = await send(client, call, headers)
            latency = (time.perf_counter() - t0) * 1000.0
            result.sent += 1
            result.statuses[status] += 1
            if status == ok_status:
                result.ok += 1
                result.latencies_ms.append(latency)
                result.accepted_events += call.events
                result.accepted_points += call.points
            result.finished = time.monotonic()

    async with session(concurrency) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    result.client_cpu_s = time.process_time() - cpu0
    if result.finished == 0.0:
        result.finished = time.monotonic()
    return result
