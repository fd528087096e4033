"""The service under test as subprocesses: the web tier (bin/web, granian) and Celery workers, and the
bare floor app's servers, stopped at exit whatever happens."""

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError as KombuOperationalError

from bench.config import PREFIX, ROOT, BenchConfig, bench_env

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0
_BROKER_ERRORS = (OSError, KombuOperationalError, AMQPError)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Proc:
    popen: subprocess.Popen
    log: IO[str]
    node: str | None  # a Celery worker's node name


class Stack:
    """The web tier, an ingest worker, a rank worker and (for a while) the naive worker or a floor server.

    Every process leads its own process group; ``stop`` signals the group, so a worker's
    pool children go with it.
    """

    def __init__(self, cfg: BenchConfig, log_dir: Path) -> None:
        self.cfg = cfg
        self.log_dir = log_dir
        self.port = free_port()
        self.procs: dict[str, _Proc] = {}
        self._stopping: list[_Proc] = []
        self._generation = itertools.count()
        self.strategy = "merge_tree"
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def describe(self) -> dict[str, str]:
        """The command line of each process, for the report."""
        return {
            name: " ".join("python" if arg == sys.executable else str(arg) for arg in proc.popen.args)  # type: ignore[union-attr]
            for name, proc in self.procs.items()
        }

    def _spawn(self, name: str, argv: list[str], strategy: str, node: str | None = None) -> None:
        log = open(self.log_path(name), "a")  # closed when the process is reaped
        log.write(f"\n===== start {name} strategy={strategy} at {time.strftime('%H:%M:%S')} =====\n")
        log.flush()
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=bench_env(strategy),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[name] = _Proc(popen, log, node)

    def _celery(self, name: str, app: str, queues: list[str], concurrency: int, strategy: str) -> None:
        node = f"{PREFIX}-{name}{next(self._generation)}-{os.getpid()}@{socket.gethostname()}"
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-n", node, "-Q", ",".join(queues)]
        argv += ["-c", str(concurrency), "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        self._spawn(name, argv, strategy, node)

    def start(self, strategy: str, *, naive: bool = False) -> None:
        """Start (or replace) web and workers for a ranking strategy and wait until they answer.

        The web reads the strategy too, so it is replaced as well. Old processes are told to
        stop first and reaped after the new ones answer: their shutdowns overlap the start.
        """
        from django.conf import settings

        from bench.celery_naive import naive_queue_name
        from tasks.queues import worker_queue_names

        self.terminate("lb", "web", "scores", "ingest", "rank")
        self.strategy = strategy
        self.port = free_port()
        # As make run deploys it: HAProxy on the port, score submissions to the front door
        # (bin/web --app scores), the rest to Django (bin/web --app django). bin/web execs
        # granian: the process started here is granian's main, its workers below it.
        ports = {"web": free_port(), "scores": free_port()}
        for app, port in ports.items():
            argv = [sys.executable, "bin/web", "--app", "django" if app == "web" else "scores"]
            argv += ["--host", "127.0.0.1", "--port", str(port)]
            argv += ["--workers", str(self.cfg.web_workers), "--threads", str(self.cfg.web_threads)]
            self._spawn(app, argv, strategy)
        self._spawn("lb", ["bin/lb", str(self._lb_config(ports))], strategy)
        ingest = worker_queue_names(PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS, "ingest")
        rank = worker_queue_names(PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS, "rank")
        self._celery("ingest", "leaderboard_project", ingest, self.cfg.ingest_concurrency, strategy)
        self._celery("rank", "leaderboard_project", rank, self.cfg.rank_concurrency, strategy)
        if naive:
            naive_queues = [naive_queue_name(PREFIX)]
            self._celery("naive", "bench.celery_naive", naive_queues, self.cfg.naive_concurrency, strategy)
        self.wait_ready()
        self.reap()

    def start_floor(self, server: str) -> str:
        """Serve the bare floor app (bench/floor_app.py) by ``granian`` or ``gunicorn`` with the
        web tier's workers and threads; the URL once it answers. ``stop(f"floor-{server}")`` ends it."""
        port = free_port()
        workers, threads = str(self.cfg.web_workers), str(self.cfg.web_threads)
        if server == "granian":
            # bin/web's own flags, so the floor differs from the web tier by the app alone.
            argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--no-ws", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--workers", workers, "--blocking-threads", threads]
            argv += ["--backpressure", threads, "--http", "1", "--log-level", "warning", "bench.floor_app:app"]
        elif server == "gunicorn":
            argv = [sys.executable, "-m", "gunicorn", "bench.floor_app:app", "--bind", f"127.0.0.1:{port}"]
            argv += ["--workers", workers, "--worker-class", "gthread", "--threads", threads]
            argv += ["--log-level", "warning"]
        else:
            raise ValueError(f"no floor server {server!r}")
        name = f"floor-{server}"
        self._spawn(name, argv, self.strategy)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + _START_TIMEOUT
        while not _posts(url):
            if self.procs[name].popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].popen.returncode}; see {self.log_path(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not answering within {_START_TIMEOUT:.0f} s")
            time.sleep(0.1)
        return url

    def _lb_config(self, ports: dict[str, int]) -> Path:
        """haproxy/local.cfg on this run's ports (one Django server, one front door)."""
        text = (ROOT / "haproxy" / "local.cfg").read_text()
        text = text.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")
        text = text.replace("    server web2 127.0.0.1:8002\n", "")
        text = text.replace("127.0.0.1:8001", f"127.0.0.1:{ports['web']}")
        text = text.replace("127.0.0.1:8003", f"127.0.0.1:{ports['scores']}")
        path = self.log_dir / "haproxy.cfg"
        path.write_text(text)
        return path

    def cpu_roots(self) -> dict[str, set[int]]:
        """The stack's own process trees by tier, for bench/cpu.py: the web tier (HAProxy and
        both kinds of web process), the Celery workers."""
        workers = {proc.popen.pid for name, proc in self.procs.items() if proc.node is not None}
        web = {self.procs[name].popen.pid for name in ("lb", "web", "scores")}
        return {"web": web, "workers": workers}

    def wait_ready(self) -> None:
        from leaderboard_project.celery import app as celery_app

        deadline = time.monotonic() + _START_TIMEOUT
        pending = {name for name, proc in self.procs.items() if proc.node is not None}
        web_up = False
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.popen.returncode}; see {self.log_path(name)}")
            if not web_up:
                web_up = self._web_answers()
            if pending:
                pending -= self._answering(celery_app, pending)
            if web_up and not pending:
                return
            time.sleep(0.1)
        raise RuntimeError(f"not ready within {_START_TIMEOUT:.0f} s: {sorted(pending) or ['web']}")

    def wait_quiet(self, timeout: float) -> float | None:
        """Wait until the queues are empty and the workers' logs stay still for a while.

        Returns the monotonic time of the last activity seen (when the pipeline went idle),
        or None when it was still busy after ``timeout`` seconds.
        """
        from bench.store import queue_depth
        from leaderboard_project.celery import app as celery_app

        logs = [self.log_path(name) for name in ("ingest", "rank")]
        last: tuple[int, ...] = ()
        changed = time.monotonic()
        deadline = changed + timeout
        while time.monotonic() < deadline:
            sizes = tuple(path.stat().st_size if path.exists() else 0 for path in logs)
            try:
                depth = queue_depth(celery_app)
            except _BROKER_ERRORS:
                depth = -1
            if sizes != last or depth != 0:
                last, changed = sizes, time.monotonic()
            elif time.monotonic() - changed >= self.cfg.quiet_seconds:
                return changed
            time.sleep(0.1)
        return None

    def _answering(self, celery_app: Any, names: set[str]) -> set[str]:
        """Workers that answer a ping; a fresh connection each time, so a broker restart does not stick."""
        nodes = {self.procs[name].node: name for name in names}
        try:
            with celery_app.connection_for_write() as conn:
                replies = celery_app.control.ping(destination=list(nodes), timeout=0.5, connection=conn) or []
        except _BROKER_ERRORS:
            return set()
        return {nodes[node] for reply in replies for node in reply if node in nodes}

    def _web_answers(self) -> bool:
        """Both web processes answer through HAProxy: Django (GET) and the score front door
        (a POST without a key, refused by the door itself). HAProxy routes to a server that
        is not listening yet until its checks fail, so a 502/503 there means not ready."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/bench/noop", timeout=1) as response:
                if response.status != 200:
                    return False
            request = urllib.request.Request(f"{self.base_url}/api/v1/leaderboards/ready/scores", data=b"{}")
            with urllib.request.urlopen(request, timeout=1) as response:
                return True
        except urllib.error.HTTPError as answer:
            return answer.code < 500
        except (urllib.error.URLError, OSError):
            return False

    def terminate(self, *names: str) -> None:
        """Send SIGTERM to these processes (all when none is named); ``reap`` waits for them."""
        for name in [n for n in (names or tuple(self.procs)) if n in self.procs]:
            proc = self.procs.pop(name)
            # The leader only: granian's and gunicorn's main and Celery's main process stop
            # their children gracefully; the group gets SIGKILL in reap() if anything lingers.
            if proc.popen.poll() is None:
                proc.popen.terminate()
            self._stopping.append(proc)

    def reap(self) -> None:
        """Wait for terminated processes; SIGKILL the groups of those that linger."""
        deadline = time.monotonic() + _STOP_TIMEOUT
        for proc in self._stopping:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.popen, signal.SIGKILL)
                proc.popen.wait()
            _signal_group(proc.popen, signal.SIGKILL)  # pool children a worker left behind
            proc.log.close()
        self._stopping = []

    def stop(self, *names: str) -> None:
        """Stop these processes (all when none is named) and wait until they are gone."""
        self.terminate(*names)
        self.reap()


def _posts(url: str) -> bool:
    request = urllib.request.Request(url, data=b'{"user_id": "ready", "points": 1}', method="POST")
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status == 202
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(popen: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(popen.pid, sig)
    except ProcessLookupError:
        pass
