"""Make an API key and print it, alone, on stdout (the only time it is shown)."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rankings.models import Leaderboard
from scores.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key; prints the key alone on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--leaderboard", help="limit the key to this leaderboard slug")
        parser.add_argument("--admin", action="store_true", help="may create leaderboards and write to all")
        parser.add_argument(
            "--tenant", default="", help="keys of one tenant share one fair share under load (default: the key's board)"
        )

    def handle(self, *args: object, **options: object) -> None:
        board = None
        if options["leaderboard"]:
            board = Leaderboard.objects.filter(slug=options["leaderboard"]).first()
            if board is None:
                raise CommandError(f"no leaderboard {options['leaderboard']!r}")
        tenant = str(options["tenant"])
        if len(tenant) > 64:
            raise CommandError("--tenant takes at most 64 characters")
        _, raw = ApiKey.generate(
            name=str(options["name"]), leaderboard=board, is_admin=bool(options["admin"]), tenant=tenant
        )
        self.stdout.write(raw)
