"""Rebuild one board's rank index from the score table, chunk by chunk, with a progress bar."""

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from rankings import cache, index_upkeep
from rankings.models import Leaderboard
from rankings.services import index_rebuild


class Command(BaseCommand):
    help = "Rebuild the rank index of a leaderboard (resuming a stalled rebuild); shows a progress bar."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--leaderboard", required=True, help="slug")
        parser.add_argument("--period", help="period key; the current one when left out")

    def handle(self, *args: object, **options: object) -> None:
        board = Leaderboard.objects.filter(slug=options["leaderboard"]).first()
        if board is None:
            raise CommandError(f"no leaderboard {options['leaderboard']!r}")
        period = str(options["period"] or board.current_period())
        bar = tqdm(desc=f"{board.slug} rank index", unit="rows", file=self.stderr)
        try:
            if index_rebuild(leaderboard=board, period=period, on_chunk=lambda done, total: _show(bar, done, total)):
                self.stdout.write(f"{board.slug}: rank index rebuilt ({bar.n} rows)")
                return
            # A rank worker holds the rebuild: follow it until it finishes.
            client = cache.redis_client()
            while (progress := index_upkeep.index_build_progress(client, board.id, period)) is not None:
                _show(bar, progress.done, progress.total)
                time.sleep(0.5)
        finally:
            bar.close()
        self.stdout.write(f"{board.slug}: rank index rebuilt by a rank worker")


def _show(bar: tqdm, done: int, total: int) -> None:
    bar.total = max(total, done)
    bar.update(done - bar.n)
