from django.core.management.base import BaseCommand, CommandParser

from tasks.beat import schedules_install


class Command(BaseCommand):
    help = "Install the beat schedules of tasks/schedules.py that the database lacks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", action="store_true", help="also overwrite schedules edited in the admin")

    def handle(self, *args: object, **options: object) -> None:
        for task in schedules_install(reset=bool(options["reset"])):
            self.stdout.write(f"installed {task.name!r}: {task.task} every {task.interval}")
