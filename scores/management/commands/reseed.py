"""Load a board's scores from a fixture or synthetic users, then rebuild its top-N and index."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from rankings import cache
from rankings.models import Leaderboard
from rankings.services import index_rebuild, leaderboard_create, topn_rebuild
from scores.seeding import fixture_scores, scores_replace, synthetic_scores


class Command(BaseCommand):
    help = "Replace a leaderboard's scores with a fixture file or N synthetic users."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--leaderboard", required=True, help="slug; created when missing")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--users", type=int, help="this many synthetic users")
        source.add_argument("--fixture", type=Path, help="a JSON file like fixtures/demo.json")
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args: object, **options: object) -> None:
        slug = str(options["leaderboard"])
        if options["fixture"]:
            path = Path(str(options["fixture"]))
            if not path.exists():
                raise CommandError(f"no fixture file {path}")
            board_fields, rows = fixture_scores(path)
            count = len(rows)
            source = iter(rows)
        else:
            count = int(options["users"])  # type: ignore[call-overload]
            if count < 0:
                raise CommandError("--users must be 0 or more")
            board_fields, source = {}, synthetic_scores(count, seed=int(options["seed"]))  # type: ignore[call-overload]
        board = Leaderboard.objects.filter(slug=slug).first()
        if board is None:
            board = leaderboard_create(**{"name": slug.title(), **board_fields, "slug": slug})
        period = board.current_period()
        with tqdm(total=count, unit="users", desc=f"seeding {slug}", disable=None) as bar:
            loaded = scores_replace(leaderboard=board, rows=source, progress=bar.update)
        cache.index_reset(cache.redis_client(), board.id, period)
        top = topn_rebuild(leaderboard=board, period=period)
        index_rebuild(leaderboard=board, period=period)
        self.stdout.write(f"{slug}: {loaded} users; top-N v{top.version} with {len(top.entries)} entries")
