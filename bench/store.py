"""The benchmark's own database and Redis databases: create, migrate, reset, and read back."""

import subprocess
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from bench.config import DB_NAME, PREFIX, REDIS_CACHE_DB, REDIS_RESULT_DB, ROOT, bench_env


def conninfo(dbname: str) -> dict[str, Any]:
    env = bench_env()
    return {
        "host": env.get("LEADERBOARD_DB_HOST", "127.0.0.1"),
        "port": env.get("LEADERBOARD_DB_PORT", "5432"),
        "user": env.get("LEADERBOARD_DB_USER", "postgres"),
        "password": env.get("LEADERBOARD_DB_PASSWORD", ""),
        "dbname": dbname,
    }


def database_ensure() -> bool:
    """Create the benchmark database when missing; True when it was created."""
    with psycopg.connect(**conninfo("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone() is not None:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
        return True


def migrations_pending() -> bool:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return bool(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def database_migrate() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate into {DB_NAME} failed:\n{result.stdout}\n{result.stderr}")


def state_reset() -> None:
    """Empty the benchmark's tables, Redis databases and queues (never anyone else's)."""
    from django.db import connection
    from django_redis import get_redis_connection

    from bench.celery_naive import app as naive_app
    from leaderboard_project.celery import app as celery_app

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE rankings_leaderboard, scores_apikey RESTART IDENTITY CASCADE")
        cursor.execute("DROP TABLE IF EXISTS bench_raw_scores")
    # FLUSHDB ASYNC: a million-user rank index would outlast the cache client's 1 s timeout.
    for client, db in ((get_redis_connection("default"), REDIS_CACHE_DB), (celery_app.backend.client, REDIS_RESULT_DB)):
        if client.connection_pool.connection_kwargs.get("db") != db:
            raise RuntimeError(f"refusing to flush Redis DB {client.connection_pool.connection_kwargs.get('db')}")
        client.flushdb(asynchronous=True)
    queues_purge(celery_app, naive_app)


def queues_purge(*apps: Any) -> None:
    """Purge every queue of these apps (all ``lbbench.*``), redeclaring one whose arguments changed."""
    from amqp.exceptions import PreconditionFailed

    for app in apps:
        names = list(app.amqp.queues)
        if not all(name.startswith(PREFIX + ".") for name in names):
            raise RuntimeError(f"refusing to purge queues outside {PREFIX}: {names}")
        with app.connection_for_write() as conn:
            for name in names:
                queue = app.amqp.queues[name]
                try:
                    queue(conn.channel()).declare()
                except PreconditionFailed:
                    # Declared earlier with other arguments (the app's queue settings changed).
                    conn.channel().queue_delete(name)
                    queue(conn.channel()).declare()
                conn.channel().queue_purge(name)


def work_queue_names() -> list[str]:
    """The queues the service's workers consume (not the dead-letter queue)."""
    from django.conf import settings

    from tasks.queues import all_queue_names

    return all_queue_names(PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS)


def queue_depth(app: Any, names: list[str] | None = None) -> int:
    """Messages ready in these queues (default: the workers' queues), not those a worker holds unacknowledged."""
    total = 0
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names or work_queue_names():
            total += channel.queue_declare(queue=name, passive=True).message_count
    return total


def board_sum(board_id: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(score), 0) FROM scores_score WHERE leaderboard_id = %s", [board_id])
        return int(cursor.fetchone()[0])


def boards_sums(board_ids: list[int]) -> dict[int, int]:
    """Each board's score sum (0 for a board without scores), in one query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT leaderboard_id, sum(score) FROM scores_score WHERE leaderboard_id = ANY(%s) GROUP BY 1",
            [list(board_ids)],
        )
        found = {int(board): int(total) for board, total in cursor.fetchall()}
    return {board: found.get(board, 0) for board in board_ids}


def wait_for_sum(board_id: int | list[int], expected: int, deadline: float, interval: float = 0.05) -> float | None:
    """Poll until the score sum of the board (or boards) reaches ``expected``; the monotonic
    time it did, or None."""
    ids = [board_id] if isinstance(board_id, int) else board_id
    while True:
        if sum(boards_sums(ids).values()) >= expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def server_versions() -> dict[str, str]:
    from django.db import connection
    from django_redis import get_redis_connection

    from leaderboard_project.celery import app as celery_app

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = str(cursor.fetchone()[0])
        cursor.execute("SHOW autovacuum")
        autovacuum = str(cursor.fetchone()[0])
        cursor.execute("SHOW synchronous_commit")
        synchronous_commit = str(cursor.fetchone()[0])
    redis_version = str(get_redis_connection("default").info("server").get("redis_version"))
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        props = conn.connection.server_properties
        rabbit = props.get("version", b"?")
    return {
        "postgresql": postgres,
        "postgresql_autovacuum": autovacuum,
        "postgresql_synchronous_commit": synchronous_commit,
        "redis": redis_version,
        "rabbitmq": rabbit.decode() if isinstance(rabbit, bytes) else str(rabbit),
    }
