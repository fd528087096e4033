"""Worker queues come from the settings, and an ingest worker refuses to run while an
ingest partition has no consumer on the broker (real celery workers, real RabbitMQ)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection

from tasks.queues import ingest_queue_name
from tasks.worker_check import EX_CONFIG, partitions_without_consumer

ROOT = Path(__file__).resolve().parent.parent
# Queues of their own: the partitions here never meet another test's workers.
PREFIX = f"{settings.LEADERBOARD_QUEUE_PREFIX}wq"


def env(partitions: int, wait: float) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "LEADERBOARD_QUEUE_PREFIX": PREFIX,
        "LEADERBOARD_INGEST_PARTITIONS": str(partitions),
        "LEADERBOARD_INGEST_COVERAGE_WAIT_SECONDS": str(wait),
    }


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], partitions: int, wait: float, name: str) -> subprocess.Popen:
        node = ["-n", f"{PREFIX}-{name}-{os.getpid()}@{socket.gethostname()}", "--without-gossip", "--without-mingle"]
        proc = subprocess.Popen(
            [*argv, *node, "-c", "1", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env(partitions, wait),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc


@pytest.fixture
def procs() -> Iterator[Procs]:
    started = Procs()
    yield started
    for proc in started.procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with Connection(settings.CELERY_BROKER_URL) as conn:
        for partition in range(8):
            conn.channel().queue_delete(ingest_queue_name(PREFIX, partition))


def uncovered(partitions: int) -> list[int]:
    with Connection(settings.CELERY_BROKER_URL) as conn:
        return partitions_without_consumer(conn, PREFIX, partitions)


def wait_for(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def celery_worker(queues: list[int]) -> list[str]:
    names = ",".join(ingest_queue_name(PREFIX, n) for n in queues)
    return [sys.executable, "-m", "celery", "-A", "leaderboard_project", "worker", "-Q", names]


def test_it_prints_the_queues_of_each_role_from_the_settings():
    def queues(role: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", "worker_queues", role],
            cwd=ROOT,
            env=env(partitions=6, wait=0),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    ingest = ",".join(f"{PREFIX}.ingest.{n}" for n in range(6))
    assert queues("ingest") == ingest
    assert queues("rank") == f"{PREFIX}.rank,{PREFIX}.maintenance"
    assert queues("all") == f"{ingest},{PREFIX}.rank,{PREFIX}.maintenance"


def test_it_starts_an_ingest_worker_on_every_partition_of_the_settings(procs):
    worker = procs.start([sys.executable, "bin/worker", "ingest"], partitions=6, wait=5, name="all6")
    wait_for(lambda: uncovered(6) == [])
    time.sleep(6)  # past the wait: the check ran and passed
    assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""


def test_it_refuses_to_start_an_ingest_worker_that_leaves_partitions_unconsumed(procs):
    # The Procfile's old hard-coded list, with the partitions raised to 6.
    worker = procs.start(celery_worker([0, 1, 2, 3]), partitions=6, wait=2, name="stale")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == EX_CONFIG, output[-3000:]
    assert "ingest partitions [4, 5] of 6 have no consumer" in output


def test_it_lets_partitions_be_split_over_workers_that_start_together(procs):
    first = procs.start(celery_worker([0, 1]), partitions=4, wait=60, name="half-a")
    time.sleep(3)
    assert first.poll() is None  # still waiting for the other half
    second = procs.start(celery_worker([2, 3]), partitions=4, wait=60, name="half-b")
    wait_for(lambda: uncovered(4) == [])
    time.sleep(3)
    assert first.poll() is None and second.poll() is None
