"""A Celery app for the naive baseline: the service's settings, only ``bench.tasks``, one queue."""

import os

from celery import Celery
from django.conf import settings
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")


def naive_queue_name(prefix: str) -> str:
    return f"{prefix}.naive"


_queue = naive_queue_name(os.environ.get("LEADERBOARD_QUEUE_PREFIX", "lb"))
# Built from the service's settings by hand: with config_from_object the settings'
# CELERY_IMPORTS and CELERY_TASK_ROUTES replace this app's own when they load.
app = Celery("bench_naive", broker=settings.CELERY_BROKER_URL, include=["bench.tasks"])
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    broker_transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    task_acks_late=True,
    task_ignore_result=True,
    task_queues=[Queue(_queue, Exchange(_queue, type="direct", durable=True), routing_key=_queue, durable=True)],
    task_default_queue=_queue,
    task_routes={"bench.*": {"queue": _queue}},
)
