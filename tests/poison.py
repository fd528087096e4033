"""A task that kills the worker process running it, as a message that crashes its worker
every time (a segfault in a C extension, an OOM kill) would. Loaded by the test settings
only, so that the delivery-limit test can publish it onto an ingest queue."""

import os
import signal

from celery import shared_task

KILL_WORKER_TASK = "tests.poison.kill_worker"


@shared_task(name=KILL_WORKER_TASK)
def kill_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
