"""On a real Citus cluster (``make test-citus``): the distributed catalog, single-shard
apply of one user's events, the top-N row lock, the database reads and board deletion.

Read from Citus itself: pg_dist_partition / pg_dist_shard / pg_dist_placement / pg_dist_node,
and the commands the coordinator sends to the workers (citus.log_remote_commands).
"""

import os
import subprocess
import sys
import threading
from io import StringIO

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django_redis import get_redis_connection

from leaderboard_project.citus import COLOCATED_WITH, DISTRIBUTED, REFERENCE
from rankings.models import TopN
from rankings.selectors import db_top_rows, leaderboard_user_rank
from rankings.services import topn_rebuild
from scores.citus import citus_problems
from scores.models import ApiKey, ProcessedEvent, Score
from scores.seeding import scores_replace
from scores.services import now_micros, score_events_apply
from tasks.messages import ScoreEvent
from tests.citus_checks import remote_commands, shard_index, worker_nodes

pytestmark = pytest.mark.citus
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rows(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def apply(board_id: int, events: list[tuple[str, int, str]]) -> None:
    """One ingest batch, as an ingest worker applies it: (user, points, event id) each."""
    accepted = now_micros()
    score_events_apply(
        events=[ScoreEvent(board_id, user, points, event_id, accepted) for user, points, event_id in events]
    )


def test_it_distributes_the_tables_as_listed_in_the_catalog(db):
    workers = worker_nodes()
    assert len(workers) >= 2, f"the cluster should have two workers, has {workers}"
    catalog = {
        table: (method, column, colocation, repmodel)
        for table, method, column, colocation, repmodel in rows(
            """
            SELECT logicalrelid::regclass::text, partmethod::text,
                   CASE WHEN partmethod = 'h' THEN column_to_column_name(logicalrelid, partkey) END,
                   colocationid, repmodel::text
            FROM pg_dist_partition
            """
        )
    }
    for table, column in DISTRIBUTED.items():
        assert catalog[table][:2] == ("h", column), f"{table} is not hash-distributed by {column}: {catalog[table]}"
    for table in REFERENCE:
        assert (catalog[table][0], catalog[table][3]) == ("n", "t"), f"{table} is not a reference table"
    for table, anchor in COLOCATED_WITH.items():
        assert catalog[table][2] == catalog[anchor][2] != 0
    # The board-keyed top-N has another column type: a colocation group of its own.
    assert catalog["rankings_topn"][2] != catalog["scores_score"][2]
    for table in DISTRIBUTED:
        shards = shard_index(table)
        assert len(shards) == settings.LEADERBOARD_CITUS_SHARD_COUNT
        assert {node for _, node in shards.values()} == workers, f"{table} is not on every worker"
    # Colocated shards share hash ranges and nodes, shard by shard.
    score_ranges = sorted(shard_index("scores_score").values())
    assert sorted(shard_index("scores_processedevent").values()) == score_ranges
    assert citus_problems() == []


def test_it_changes_nothing_when_distributing_again(db):
    before = rows("SELECT logicalrelid::text, partmethod, colocationid FROM pg_dist_partition ORDER BY 1")
    shards_before = rows("SELECT shardid, groupid FROM pg_dist_placement ORDER BY 1")
    out = StringIO()
    call_command("distribute_tables", stdout=out)
    assert "distributed table" not in out.getvalue() and "reference table" not in out.getvalue()
    assert "distributed as listed" in out.getvalue()
    assert rows("SELECT logicalrelid::text, partmethod, colocationid FROM pg_dist_partition ORDER BY 1") == before
    assert rows("SELECT shardid, groupid FROM pg_dist_placement ORDER BY 1") == shards_before


def test_it_exits_non_zero_naming_what_differs(db):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "LEADERBOARD_DB_NAME": connection.settings_dict["NAME"],
        "LEADERBOARD_CITUS_SHARD_COUNT": str(settings.LEADERBOARD_CITUS_SHARD_COUNT + 1),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "distribute_tables"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert f"has {settings.LEADERBOARD_CITUS_SHARD_COUNT} shards" in done.stderr, done.stderr


def test_it_applies_one_users_events_on_one_shard_of_one_worker(transactional_db, make_board):
    board = make_board()
    apply(board.id, [("solo", 5, "a")])  # the row exists: the next batch takes the update path
    with remote_commands() as sent:
        apply(board.id, [("solo", 7, "b"), ("solo", 1, "c"), ("solo", 7, "b")])
    score_shards, event_shards = sent.shards("scores_score"), sent.shards("scores_processedevent")
    assert len(score_shards) == 1 and len(event_shards) == 1, sent.commands
    (score_shard,), (event_shard,) = score_shards, event_shards
    # Colocated: the event-id shard covers the same hash range on the same node.
    assert shard_index("scores_score")[score_shard] == shard_index("scores_processedevent")[event_shard]
    assert len(sent.nodes) == 1, sent.nodes
    assert Score.objects.get(leaderboard=board, user_id="solo").score == 13
    # Router-planned statements (one shard, one node): one-phase commit. The former
    # INSERT ... SELECT FROM unnest(...) went "pull to coordinator" and a COPY of
    # intermediate results, committed in two phases even on one node.
    assert not sent.prepared(), sent.commands
    print(
        f"\n[citus single user] shard={score_shard} node={next(iter(sent.nodes))} "
        f"remote_commands={len(sent.commands)} two_phase_commit={sent.prepared()}"
    )


def test_it_spreads_a_batch_of_many_users_over_both_workers(transactional_db, make_board):
    board = make_board()
    users = [f"user-{n}" for n in range(200)]
    with remote_commands() as sent:
        apply(board.id, [(user, n, f"e{n}") for n, user in enumerate(users)])
    assert sent.nodes == worker_nodes()
    assert sent.shards("scores_score") == set(shard_index("scores_score"))
    assert sent.prepared(), "a transaction over two workers commits in two phases"
    assert dict(Score.objects.filter(leaderboard=board).values_list("user_id", "score")) == {
        user: n for n, user in enumerate(users)
    }


def test_it_holds_the_top_n_row_lock_across_sessions(transactional_db, make_board):
    board = make_board()
    topn_rebuild(leaderboard=board, period=board.current_period())
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    blocked: list[str] = []

    def other_session() -> None:
        # NOWAIT travels with the shard query to the worker; lock_timeout would stay on the
        # coordinator while the wait happens on the worker.
        with psycopg.connect(**params, autocommit=True) as other:
            try:
                other.execute(
                    "SELECT id FROM rankings_topn WHERE leaderboard_id = %s AND period = %s FOR UPDATE NOWAIT",
                    [board.id, board.current_period()],
                )
            except psycopg.errors.LockNotAvailable as exc:
                blocked.append(str(exc))

    with transaction.atomic():
        TopN.objects.select_for_update().get(leaderboard=board, period=board.current_period())
        thread = threading.Thread(target=other_session)
        thread.start()
        thread.join()
    assert len(blocked) == 1, "a second session took the locked top-N row"
    thread = threading.Thread(target=other_session)
    thread.start()
    thread.join()
    assert len(blocked) == 1, "the lock outlived its transaction"


def test_it_reads_top_and_ranks_from_the_database(transactional_db, make_board):
    board = make_board(top_n=10)
    get_redis_connection("default").flushdb()  # this test's own Redis database: no rank index
    scores_replace(leaderboard=board, rows=iter([(f"p{n}", (n * 37) % 101) for n in range(300)]))
    truth = rows(
        "SELECT user_id, score FROM scores_score WHERE leaderboard_id = %s "
        "ORDER BY sort_key, reached_at, user_id LIMIT 10",
        [board.id],
    )
    top = db_top_rows(leaderboard=board, period=board.current_period(), limit=10)
    assert [(row.user_id, row.score) for row in top] == truth
    # Redis has no rank index for this board: the read falls back to the database.
    ranked = leaderboard_user_rank(leaderboard=board, user_id=truth[3][0], around=1)
    assert ranked is not None and ranked.rank == 4 and ranked.total == 300
    assert [entry["user_id"] for entry in ranked.around] == [truth[2][0], truth[3][0], truth[4][0]]


def test_it_deletes_a_board_with_rows_on_every_shard(transactional_db, make_board):
    board, other = make_board(), make_board()
    for target in (board, other):
        apply(target.id, [(f"u{n}", n, f"e{n}") for n in range(100)])
        topn_rebuild(leaderboard=target, period=target.current_period())
    ApiKey.generate(name="board writer", leaderboard=board)
    assert (
        len(
            {
                shard
                for (shard,) in rows(
                    "SELECT get_shard_id_for_distribution_column('scores_score', user_id) FROM scores_score "
                    "WHERE leaderboard_id = %s",
                    [board.id],
                )
            }
        )
        == settings.LEADERBOARD_CITUS_SHARD_COUNT
    )

    board.delete()
    assert Score.objects.filter(leaderboard_id=board.id).count() == 0
    assert ProcessedEvent.objects.filter(leaderboard_id=board.id).count() == 0
    assert TopN.objects.filter(leaderboard_id=board.id).count() == 0
    assert ApiKey.objects.filter(leaderboard_id=board.id).count() == 0
    assert Score.objects.filter(leaderboard=other).count() == 100
