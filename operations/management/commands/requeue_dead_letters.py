from django.core.management.base import BaseCommand, CommandError, CommandParser

from operations.broker import BROKER_ERRORS, dead_letters_requeue_all, dead_queue_name


class Command(BaseCommand):
    help = (
        "Move every dead letter back to the queue it died in, once its cause is fixed "
        "(ingest de-duplicates events, so a letter delivered twice counts once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk", type=int, default=100, help="letters taken per broker channel (default 100)")

    def handle(self, *args: object, **options: object) -> None:
        chunk = int(options["chunk"])  # type: ignore[call-overload]
        if chunk < 1:
            raise CommandError("--chunk must be at least 1")
        try:
            moved = dead_letters_requeue_all(chunk=chunk)
        except BROKER_ERRORS as exc:
            raise CommandError(f"the broker is unavailable, nothing more requeued: {exc}") from exc
        self.stdout.write(f"requeued {moved} dead letter(s) from {dead_queue_name()}")
