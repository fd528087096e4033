"""The Celery application, configured from Django settings (namespace CELERY).

Task modules are listed in ``CELERY_IMPORTS``: they live in the ``tasks`` package, which
is not an app with a ``tasks.py`` that ``autodiscover_tasks`` would find.
"""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")

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
