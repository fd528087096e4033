"""The whole service on the Citus cluster (``make test-citus``): HTTP clients, a real
worker, exact totals, and which shards and workers took the writes.

tests/test_end_to_end.py runs on the cluster too (same test as on plain PostgreSQL); this
one adds what only Citus has to say: the spread of one board's rows over shards and nodes.
"""

import time

import httpx
import pytest

from rankings.models import Leaderboard
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores, eventually, queued_messages
from tests.citus_checks import board_shard_rows, shard_index, worker_nodes
from tests.citus_load import Load

pytestmark = [pytest.mark.citus, pytest.mark.pipeline]


@pytest.fixture(scope="session")
def strategy() -> str:
    return "merge_tree"


def make_board(base_url: str, admin_key: str, slug: str) -> Leaderboard:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin_key}"}) as admin:
        created = admin.post("/api/v1/leaderboards/", json={"slug": slug, "name": slug, "min_points": -20})
        assert created.status_code == 201, created.text
    return Leaderboard.objects.get(slug=slug)


def test_it_is_exact_on_citus_and_spreads_writes_over_every_worker(worker, live_server, admin_key):
    board = make_board(live_server.url, admin_key, "citus-e2e")
    load = Load.make(events=8_000, users=800, seed=8)
    started = time.monotonic()
    accepted = load.send(live_server.url, admin_key, board.slug, clients=6)
    sent_for = time.monotonic() - started
    assert accepted == load.events

    def drained() -> None:
        assert queued_messages() == 0
        assert db_scores(board) == load.expected
        assert_top_consistent(board)

    eventually(drained, timeout=300)
    drained_after = time.monotonic() - started
    assert_ranks_consistent(board, sorted(load.expected)[:20])

    writes = board_shard_rows(board)
    events = board_shard_rows(board, "scores_processedevent")
    assert set(writes) == set(shard_index("scores_score")), "some score shard took no writes"
    assert {node for node, _ in writes.values()} == worker_nodes()
    assert sum(rows for _, rows in writes.values()) == len(load.expected)
    per_node: dict[str, int] = {}
    for node, rows in writes.values():
        per_node[node] = per_node.get(node, 0) + rows
    print(
        f"\n[e2e citus merge_tree] events={load.events} users={len(load.expected)} requests={len(load.requests)} "
        f"sent_in={sent_for:.1f}s drained_in={drained_after:.1f}s events_per_s={load.events / drained_after:.0f} "
        f"score_shards_written={len(writes)} event_id_shards_written={len(events)} "
        f"workers_written={len(per_node)} rows_per_worker={dict(sorted(per_node.items()))}"
    )
