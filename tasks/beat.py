"""Installs ``tasks.schedules.SCHEDULES`` as django-celery-beat periodic tasks."""

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tasks.queues import QueueRole, role_queue_name
from tasks.schedules import SCHEDULES


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
            },
        )
        installed.append(task)
    return installed
