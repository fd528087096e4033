"""Adding a worker to the Citus cluster and moving shards to it while events flow
(``make test-citus``; README "Citus": the same steps by hand).

A third node (CITUS_STANDBY_PORT, 5436) is started by bin/ensure-citus --standby, added
with citus_add_node, and citus_rebalance_start moves shards to it (logical replication:
writes continue during the copy). After the pipeline drains, every total is exact. The
node is drained and removed again at the end, so later tests see two workers.
"""

import os
import subprocess
import threading
import time

import psycopg
import pytest
from django.db import connection

from scores.citus import citus_problems
from tests.checks import assert_top_consistent, db_scores, eventually, queued_messages
from tests.citus_checks import board_shard_rows, shard_index, worker_nodes
from tests.citus_load import Load
from tests.test_citus_pipeline import make_board

pytestmark = [pytest.mark.citus, pytest.mark.pipeline]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = int(os.environ.get("CITUS_STANDBY_PORT", "5436"))
NODE = f"127.0.0.1:{PORT}"


@pytest.fixture(scope="session")
def strategy() -> str:
    return "merge_tree"


def scalar(sql: str, params: list | None = None) -> object:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


@pytest.fixture
def standby_node(transactional_db: None):
    """A started node with the test database and citus, not yet in the metadata."""
    db = connection.settings_dict["NAME"]
    subprocess.run(["./bin/ensure-citus", "--standby", str(PORT)], cwd=ROOT, check=True)
    # A database left by an earlier run would hold stale shard copies: start it empty.
    with psycopg.connect(host="127.0.0.1", port=PORT, user="postgres", dbname="postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    subprocess.run(["./bin/ensure-citus", "--standby", str(PORT), db], cwd=ROOT, check=True)
    yield NODE
    if scalar("SELECT count(*) FROM pg_dist_node WHERE nodeport = %s", [PORT]):
        scalar("SELECT citus_drain_node('127.0.0.1', %s)", [PORT])
        scalar("SELECT citus_remove_node('127.0.0.1', %s)", [PORT])


def rebalance_finished() -> None:
    state = scalar("SELECT state FROM citus_rebalance_status()")
    if state in ("failed", "failing", "cancelled", "cancelling"):
        pytest.fail(f"rebalance job {state}: {scalar('SELECT details FROM citus_rebalance_status()')}")
    assert state == "finished", f"rebalance job {state}"


def test_it_moves_shards_to_a_new_worker_while_events_flow(worker, live_server, admin_key, standby_node):
    board = make_board(live_server.url, admin_key, "citus-rebalance")
    load = Load.make(events=4_000, users=500, seed=36)
    sent: list[int] = []
    # A pause per request keeps traffic flowing through the move (about 30 s here).
    sender = threading.Thread(
        target=lambda: sent.append(load.send(live_server.url, admin_key, board.slug, 3, lambda: time.sleep(1.0)))
    )
    sender.start()
    time.sleep(2)
    before = worker_nodes()
    scalar("SELECT citus_add_node('127.0.0.1', %s)", [PORT])
    problems = citus_problems()
    assert any("placements on" in problem for problem in problems), problems  # not balanced yet
    started = time.monotonic()
    scalar("SELECT citus_rebalance_start()")
    # Polled with a bound, not citus_rebalance_wait(): a job that never starts (no
    # background worker slot for its executor) would hang the run instead of failing it.
    eventually(rebalance_finished, timeout=600, interval=1.0)
    moved_in = time.monotonic() - started
    traffic_during_move = sender.is_alive()
    sender.join()
    assert sent == [load.events]

    def drained() -> None:
        assert queued_messages() == 0
        assert db_scores(board) == load.expected
        assert_top_consistent(board)

    eventually(drained, timeout=300)
    assert worker_nodes() == before | {standby_node}
    assert {node for _, node in shard_index("scores_score").values()} == worker_nodes()
    assert citus_problems() == []
    writes = board_shard_rows(board)
    assert standby_node in {node for node, _ in writes.values()}
    status = scalar("SELECT state FROM citus_rebalance_status()")
    print(
        f"\n[citus rebalance] added {standby_node}, moved in {moved_in:.1f}s "
        f"(traffic still flowing at the end: {traffic_during_move}), rebalance job {status}, "
        f"{sum(1 for _, node in shard_index('scores_score').values() if node == standby_node)} of "
        f"{len(shard_index('scores_score'))} score shards now on it; totals exact for {len(load.expected)} users"
    )
