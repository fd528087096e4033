"""A Celery app for the naive baseline: the service's settings, only ``bench.tasks``, one queue."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")


def naive_queue_name(prefix: str) -> str:
    return f"{prefix}.naive"


app = Celery("bench_naive")
app.config_from_object("django.conf:settings", namespace="CELERY")
_queue = naive_queue_name(os.environ.get("LEADERBOARD_QUEUE_PREFIX", "lb"))
app.conf.imports = ("bench.tasks",)
app.conf.task_queues = [Queue(_queue, Exchange(_queue, type="direct", durable=True), routing_key=_queue, durable=True)]
app.conf.task_default_queue = _queue
app.conf.task_routes = {"bench.*": {"queue": _queue}}
