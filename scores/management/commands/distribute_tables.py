"""Distribute the tables on Citus; on plain PostgreSQL it says so and changes nothing."""

from django.core.management.base import BaseCommand, CommandError

from scores.citus import citus_distribute, citus_installed, citus_problems


class Command(BaseCommand):
    help = (
        "Make the reference and distributed tables when the citus extension is installed, then check "
        "Citus's catalog (partition method, column, colocation, shard placements on every worker) and "
        "exit non-zero naming whatever is wrong. Safe to re-run."
    )

    def handle(self, *args: object, **options: object) -> None:
        if not citus_installed():
            self.stdout.write("citus is not installed here: tables stay plain PostgreSQL tables")
            return
        try:
            done = citus_distribute()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for line in done:
            self.stdout.write(line)
        problems = citus_problems()
        if problems:
            raise CommandError("the tables are not distributed as listed:\n  " + "\n  ".join(problems))
        self.stdout.write(self.style.SUCCESS("the tables are distributed as listed (checked in pg_dist_*)"))
