"""Print the -Q list of a worker role, derived from the settings (partitions, prefix)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from tasks.queues import WORKER_ROLES, worker_queue_names


class Command(BaseCommand):
    help = "Print the comma-separated queues a worker of ROLE consumes (for celery worker -Q)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", choices=WORKER_ROLES)

    def handle(self, *args: object, role: str, **options: object) -> None:
        queues = worker_queue_names(settings.LEADERBOARD_QUEUE_PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS, role)
        self.stdout.write(",".join(queues))
