"""Fixtures on the real services: API keys, boards, and real Celery workers in subprocesses."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django_redis import get_redis_connection
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError
from rest_framework.test import APIClient

from leaderboard_project.celery import app as celery_app
from operations.health import readiness_forget
from rankings.models import Leaderboard
from rankings.selectors import cached_boards_forget
from rankings.services import leaderboard_create
from scores.models import ApiKey
from tasks.queues import all_queue_names

ROOT = Path(__file__).resolve().parent.parent


class Workers:
    """Real ``celery worker`` (and beat) processes on the test queues and database."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.nodes: dict[str, str] = {}
        self.strategy: str | None = None
        self.log_path = ROOT / ".run" / "test-worker.log"

    def env(self, strategy: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "LEADERBOARD_DB_NAME": connection.settings_dict["NAME"],
            "LEADERBOARD_RANKING_STRATEGY": strategy,
            **(extra or {}),
        }

    def _spawn(self, name: str, args: list[str], strategy: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_path.parent.mkdir(exist_ok=True)
        with open(self.log_path, "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "leaderboard_project", *args],
                cwd=ROOT,
                env=self.env(strategy, env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as a whole
            )
        self.procs[name] = proc
        self.strategy = strategy
        return proc

    def start(
        self,
        strategy: str,
        name: str = "all",
        queues: list[str] | None = None,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        prefix = django_settings.LEADERBOARD_QUEUE_PREFIX
        queues = queues or all_queue_names(prefix, django_settings.LEADERBOARD_INGEST_PARTITIONS)
        node = f"{prefix}-{name}-{os.getpid()}@{socket.gethostname()}"
        args = [
            "worker",
            "-n",
            node,
            "-Q",
            ",".join(queues),
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        proc = self._spawn(name, args, strategy, env)
        self.nodes[name] = node
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {proc.returncode}; see {self.log_path}")
            # On a connection of its own: a pooled one may have died with a broker restart.
            with celery_app.connection_for_write() as conn:
                if celery_app.control.ping(destination=[node], timeout=0.5, connection=conn):
                    return
        raise RuntimeError(f"celery worker did not answer within 60 s; see {self.log_path}")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the test queues are empty and no worker runs a task: the next test's
        database flush (TRUNCATE) must not meet an ingest transaction still writing."""
        from tests.checks import queued_messages

        nodes = [self.nodes[name] for name, proc in self.procs.items() if name in self.nodes and proc.poll() is None]
        deadline = time.monotonic() + timeout
        while nodes and time.monotonic() < deadline:
            try:
                with celery_app.connection_for_write() as conn:
                    replies = celery_app.control.inspect(destination=nodes, timeout=0.5, connection=conn).active() or {}
                queued = queued_messages()
            except (OSError, BrokerError):  # a test left the broker down: nothing to wait for
                return
            if len(replies) == len(nodes) and not any(replies.values()) and queued == 0:
                return
            time.sleep(0.1)

    def start_beat(self, strategy: str, name: str = "beat") -> None:
        schedule = ROOT / ".run" / f"{name}-{os.getpid()}.db"
        self._spawn(name, ["beat", "--loglevel", "INFO", "-s", str(schedule)], strategy)

    def ensure(self, strategy: str) -> None:
        running = set(self.procs) == {"all"} and self.procs["all"].poll() is None
        if self.strategy != strategy or not running:
            self.stop()
            self.start(strategy)

    def kill(self, name: str) -> None:
        """``kill -9`` a worker: its parent and its pool processes, nothing cleaned up."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        self.stop_named(*self.procs)
        self.strategy = None

    def stop_named(self, *names: str) -> None:
        procs = [self.procs.pop(name) for name in names if name in self.procs]
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for name in names:
            self.nodes.pop(name, None)


def _clean_services() -> None:
    get_redis_connection("default").flushdb()
    celery_app.backend.client.flushdb()
    # Deleted, not purged: queues left by an older run may carry other arguments, which
    # RabbitMQ refuses to redeclare. Workers and publishers declare them anew.
    with Connection(django_settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in django_settings.CELERY_TASK_QUEUES:
            channel.queue_delete(queue.name)


@pytest.fixture(scope="session")
def celery_workers(django_db_setup: None, django_db_blocker: object) -> Iterator[Workers]:
    _clean_services()
    workers = Workers()
    yield workers
    workers.stop()


@pytest.fixture(scope="session", params=["merge_tree", "sorted_set"])
def strategy(request: pytest.FixtureRequest) -> str:
    # Session scope makes pytest group the tests by strategy: one worker start for each.
    return request.param


@pytest.fixture
def worker(strategy: str, celery_workers: Workers, transactional_db: None, settings: object) -> Iterator[Workers]:
    """A running worker for this test's strategy (the pipeline needs committed data)."""
    settings.LEADERBOARD_RANKING_STRATEGY = strategy
    celery_workers.ensure(strategy)
    yield celery_workers
    celery_workers.wait_idle()


@pytest.fixture(autouse=True)
def _fresh_board_copies() -> None:
    # Each test's database starts empty, and slugs repeat from test to test.
    cached_boards_forget()
    readiness_forget()  # and each test's services may differ from the last one's


@pytest.fixture
def admin_key(db: None) -> str:
    return ApiKey.generate(name="admin", is_admin=True)[1]


@pytest.fixture
def make_board(db: None):
    counter = iter(range(1, 10**6))

    def make(**fields: object) -> Leaderboard:
        fields.setdefault("slug", f"board-{next(counter)}")
        fields.setdefault("name", str(fields["slug"]).title())
        return leaderboard_create(**fields)

    return make


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def bearer(client: APIClient, key: str) -> APIClient:
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client
