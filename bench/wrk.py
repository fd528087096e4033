"""The C load client of the request-rate phases: wrk with bench/wrk_post.lua, its output parsed.

An asyncio client costs 0.2-0.3 core-ms a request on this machine, as much as the service
may spend: at single-event rates it would measure itself. wrk keeps ``concurrency``
keep-alive connections on two threads and posts a distinct user per request (see the
script). Its own CPU comes from ``wait4`` (the process is gone when it is read).
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import ROOT

SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
# Two event loops, one per core: more would only take turns with the server.
THREADS = 2
_MARK = "WRK_JSON "


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk not found: the benchmark's request-rate phases need it (Debian package wrk)")
    return path


@dataclass
class WrkRun:
    """One wrk process: ``start`` it, do other work, ``finish`` it for the result."""

    url: str
    key: str
    concurrency: int
    seconds: int
    rate: float | None = None  # requests/s over all threads; None: as fast as answers come
    ok_status: int = 202
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    started: float = 0.0  # monotonic
    finished: float = 0.0
    _popen: subprocess.Popen | None = None
    _out: Any = None

    def command(self) -> list[str]:
        threads = min(THREADS, self.concurrency)
        argv = [wrk_path(), "-t", str(threads), "-c", str(self.concurrency), "-d", f"{self.seconds}s"]
        argv += ["--latency", "--timeout", "10s", "-s", str(SCRIPT), self.url, "--"]
        per_thread = 0.0 if self.rate is None else self.rate / threads
        argv += [self.run_id, self.key, f"{per_thread:.3f}", str(self.concurrency // threads)]
        return argv

    def start(self) -> "WrkRun":
        env = {**os.environ, "LB_WRK_PACED": "1" if self.rate else "0"}
        self._out = tempfile.TemporaryFile(mode="w+")
        self.started = time.monotonic()
        self._popen = subprocess.Popen(
            self.command(), cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return self

    def finish(self) -> dict[str, Any]:
        assert self._popen is not None, "finish() before start()"
        # wait4 rather than Popen.wait: the rusage is wrk's CPU, read once it has exited.
        _, status, usage = os.wait4(self._popen.pid, 0)
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        self.finished = time.monotonic()
        self._out.seek(0)
        output = self._out.read()
        self._out.close()
        line = next((line for line in output.splitlines() if line.startswith(_MARK)), None)
        if self._popen.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({self._popen.returncode}): {' '.join(self.command())}\n{output[-2000:]}")
        return self._result(json.loads(line[len(_MARK) :]), (usage.ru_utime + usage.ru_stime) * 1000.0)

    def _result(self, data: dict[str, Any], cpu_ms: float) -> dict[str, Any]:
        seconds = data["duration_us"] / 1e6
        statuses = {k: data["statuses"][k] for k in sorted(data["statuses"])}
        ok = statuses.get(str(self.ok_status), 0)
        lat = data["latency_us"]
        return {
            "client": "wrk",
            "concurrency": self.concurrency,
            "threads": min(THREADS, self.concurrency),
            "target_rate": self.rate,
            "seconds": seconds,
            "requests": data["requests"],
            "ok_status": self.ok_status,
            "ok": ok,
            # Every answer but the one that counts (a 503 or 429 is no accepted event).
            "not_ok": data["requests"] - ok,
            "statuses": statuses,
            "errors": data["errors"],
            "ok_per_s": ok / seconds if seconds else 0.0,
            "requests_per_s": data["requests"] / seconds if seconds else 0.0,
            # wrk's percentiles are of every answer, whatever its status.
            "latency_ms": {k: lat[k] / 1000.0 for k in ("p50", "p90", "p99", "max", "mean")},
            "client_cpu_ms": cpu_ms,
            "client_core_ms_per_request": cpu_ms / data["requests"] if data["requests"] else None,
            "run_id": self.run_id,
        }


def wrk_post(
    url: str, key: str, *, concurrency: int, seconds: int, rate: float | None = None, ok_status: int = 202
) -> dict[str, Any]:
    """Single-event POSTs to ``url`` for ``seconds`` (whole seconds: wrk takes no fractions)."""
    return WrkRun(url, key, concurrency, seconds, rate, ok_status).start().finish()
