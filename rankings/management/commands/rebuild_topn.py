"""Recompute top-N tables, caches and rank indexes from the score table."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rankings.models import Leaderboard
from rankings.services import index_rebuild, topn_rebuild


class Command(BaseCommand):
    help = "Rebuild the top-N (table and Redis) and the rank index of one or all leaderboards."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--leaderboard", help="slug; all leaderboards when left out")

    def handle(self, *args: object, **options: object) -> None:
        boards = Leaderboard.objects.all()
        if options["leaderboard"]:
            boards = boards.filter(slug=options["leaderboard"])
            if not boards.exists():
                raise CommandError(f"no leaderboard {options['leaderboard']!r}")
        for board in boards:
            period = board.current_period()
            top = topn_rebuild(leaderboard=board, period=period)
            built = index_rebuild(leaderboard=board, period=period)
            note = "rank index rebuilt" if built else "rank index rebuild already running"
            self.stdout.write(f"{board.slug}: top-N v{top.version} with {len(top.entries)} entries; {note}")
