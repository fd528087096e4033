from django.core.management.base import BaseCommand

from tasks.beat import schedules_install


class Command(BaseCommand):
    help = "Install (or update) the beat schedules of tasks/schedules.py in the database."

    def handle(self, *args: object, **options: object) -> None:
        for task in schedules_install():
            self.stdout.write(f"installed {task.name!r}: {task.task} every {task.interval}")
