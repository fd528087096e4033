"""Distribute the tables on Citus; on plain PostgreSQL it says so and changes nothing."""

from django.core.management.base import BaseCommand
from django.db import connection

from leaderboard_project.citus import COLOCATED_WITH, DISTRIBUTED, REFERENCE


class Command(BaseCommand):
    help = "Make the reference and distributed tables when the citus extension is installed."

    def handle(self, *args: object, **options: object) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
            if cursor.fetchone() is None:
                self.stdout.write("citus is not installed here: tables stay plain PostgreSQL tables")
                return
            cursor.execute("SELECT logicalrelid::text FROM pg_dist_partition")
            done = {row[0] for row in cursor.fetchall()}
            for table in REFERENCE:
                if table not in done:
                    cursor.execute("SELECT create_reference_table(%s)", [table])
                    self.stdout.write(f"reference table {table}")
            for table, column in DISTRIBUTED.items():
                if table not in done:
                    colocate = COLOCATED_WITH.get(table, "default")
                    cursor.execute(
                        "SELECT create_distributed_table(%s, %s, colocate_with => %s)", [table, column, colocate]
                    )
                    self.stdout.write(f"distributed table {table} by {column}")
