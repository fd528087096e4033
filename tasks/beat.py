"""Installs ``tasks.schedules.SCHEDULES`` as django-celery-beat periodic tasks, and
makes a schedule run once per interval however many beat processes send it.

Two beats (a second replica, a stale container left running) each send every schedule,
so each task would run twice per interval: twice the purges, sweeps and reconciles, and
two period upkeeps at once. A run that beat sent (the schedule's stored headers carry
``BEAT_CLAIM_HEADER``, which beat copies into each message; the admin's "Run selected
tasks" does not, so an operator's run always runs) first claims the schedule in Redis for
90 % of its interval (``SET NX PX``); a run that finds it claimed was sent by another beat
within that interval, and returns without running.
Every scheduled task is also safe to run twice: when Redis cannot be asked, the run
goes ahead rather than skip a purge or an upkeep.
"""

import json
import logging
from datetime import timedelta

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from redis.exceptions import RedisError

from rankings import redis_keys
from rankings.cache import redis_client
from tasks.queues import QueueRole, role_queue_name
from tasks.schedules import SCHEDULES

logger = logging.getLogger(__name__)

# Of the interval: a single beat sends a little late at times, and must not find its
# own last claim still held.
CLAIM_SHARE = 0.9
BEAT_CLAIM_HEADER = "lb_claim_interval"
_HEADERS = json.dumps({BEAT_CLAIM_HEADER: True})


def schedules_install(*, reset: bool = False) -> list[PeriodicTask]:
    """Create the missing schedules; with ``reset``, also undo operators' edits."""
    installed = []
    for schedule in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=schedule.every_seconds, period=IntervalSchedule.SECONDS
        )
        write = PeriodicTask.objects.update_or_create if reset else PeriodicTask.objects.get_or_create
        task, _ = write(
            name=schedule.name,
            defaults={
                "task": schedule.task,
                "interval": interval,
                "queue": role_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, QueueRole(schedule.queue)),
                "expire_seconds": schedule.expires_seconds,
                "enabled": True,
                "headers": _HEADERS,
            },
        )
        if BEAT_CLAIM_HEADER not in json.loads(task.headers or "{}"):
            # Installed by an older release: the header is not an operator's edit.
            task.headers = json.dumps({**json.loads(task.headers or "{}"), BEAT_CLAIM_HEADER: True})
            task.save(update_fields=["headers"])
        installed.append(task)
    return installed


def _interval(schedule_name: str) -> timedelta | None:
    """The schedule's interval as operators set it (None for a crontab, or gone)."""
    task = PeriodicTask.objects.select_related("interval").filter(name=schedule_name).first()
    if task is None or task.interval is None:
        return None
    return task.interval.schedule.run_every


def schedule_run_claim(*, schedule_name: str, run_id: str) -> bool:
    """Whether this run of the schedule is the interval's first (then it runs)."""
    interval = _interval(schedule_name)
    if interval is None:
        return True
    ttl_ms = max(1, int(interval.total_seconds() * 1000 * CLAIM_SHARE))
    try:
        return bool(redis_client().set(redis_keys.schedule_run_key(schedule_name), run_id, nx=True, px=ttl_ms))
    except RedisError as exc:
        logger.warning("could not claim a run of %r (%s); running it anyway", schedule_name, exc)
        return True
