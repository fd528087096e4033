"""The Celery application, configured from Django settings (namespace CELERY).

Task modules are listed in ``CELERY_IMPORTS``: they live in the ``tasks`` package, which
is not an app with a ``tasks.py`` that ``autodiscover_tasks`` would find.
"""

import logging
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")

logger = logging.getLogger(__name__)

app = Celery("leaderboard_project")
app.config_from_object("django.conf:settings", namespace="CELERY")


@worker_ready.connect
def declare_all_queues(sender: object, **kwargs: object) -> None:
    """Declare every queue, the dead-letter queue included, when a worker starts.

    A worker declares only the queues it consumes; without this, messages rejected
    before anyone declared the dead-letter queue would be dropped by RabbitMQ.
    """
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in app.conf.task_queues:
            queue(channel).declare()


@task_prerun.connect
@task_postrun.connect
def recycle_database_connections(**kwargs: object) -> None:
    """Treat each task like a Django request: drop a connection that broke (a database
    restart) or outlived CONN_MAX_AGE, keep a healthy one."""
    from django.db import close_old_connections

    close_old_connections()


@worker_ready.connect
def refuse_to_leave_partitions_unconsumed(sender: object, **kwargs: object) -> None:
    """An ingest worker exits (status 78) when an ingest partition has no consumer on the
    broker after a grace period; see tasks.worker_check for the exact rule."""
    from django.conf import settings

    from tasks.worker_check import EX_CONFIG, ingest_coverage_check

    consumed = [queue.name for queue in sender.task_consumer.queues]
    with app.connection_for_write() as conn:
        missing = ingest_coverage_check(
            conn,
            prefix=settings.LEADERBOARD_QUEUE_PREFIX,
            partitions=settings.LEADERBOARD_INGEST_PARTITIONS,
            consumed=consumed,
            wait_seconds=settings.LEADERBOARD_INGEST_COVERAGE_WAIT_SECONDS,
        )
    if missing:
        logger.critical(
            "ingest partitions %s of %d have no consumer: their events would be accepted and never applied. "
            "Start workers with bin/worker ingest (the -Q list from LEADERBOARD_INGEST_PARTITIONS).",
            missing,
            settings.LEADERBOARD_INGEST_PARTITIONS,
        )
        # Raised in the worker's main thread: Celery stops with this exit code.
        raise SystemExit(EX_CONFIG)
