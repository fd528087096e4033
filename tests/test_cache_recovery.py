"""Reads keep answering when Redis loses its data, and the caches come back from the database."""

import pytest

from rankings import cache
from rankings.selectors import leaderboard_top, leaderboard_user_rank
from scores.services import score_events_submit
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores, db_top, eventually

pytestmark = pytest.mark.pipeline


def test_it_serves_from_the_database_and_rebuilds_after_redis_is_flushed(worker, make_board, strategy):
    board = make_board(top_n=5)
    events = [{"user_id": f"u{n}", "points": n * 10} for n in range(20)]
    score_events_submit(leaderboard=board, events=events)
    expected = {e["user_id"]: e["points"] for e in events}

    def settled() -> None:
        assert db_scores(board) == expected
        assert_top_consistent(board)

    eventually(settled)
    period = board.current_period()
    client = cache.redis_client()
    client.flushdb()
    assert not cache.index_is_ready(client, board.id, period)

    served = leaderboard_top(leaderboard=board, limit=5, strategy=strategy)
    assert [(e["user_id"], e["score"]) for e in served.entries] == db_top(board)
    view = leaderboard_user_rank(leaderboard=board, user_id="u3", around=1)
    assert (view.rank, view.score, view.total) == (17, 30, 20)
    assert [e["user_id"] for e in view.around] == ["u4", "u3", "u2"]

    # The fallback asked a rank worker to rebuild the index (in chunks) and the top-N copy.
    eventually(lambda: _assert_true(cache.index_is_ready(client, board.id, period)), timeout=30)
    assert_ranks_consistent(board, sorted(expected))
    eventually(lambda: assert_top_consistent(board))


def test_it_answers_reads_from_the_database_while_redis_is_unreachable(worker, make_board, strategy, settings):
    board = make_board(top_n=3)
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 3}, {"user_id": "b", "points": 9}])

    def settled() -> None:
        assert db_scores(board) == {"a": 3, "b": 9}
        assert_top_consistent(board)

    eventually(settled)
    # A Redis that refuses connections, as seen from Django (the settings fixture rebuilds
    # the cache handlers, and restores them after the test).
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    served = leaderboard_top(leaderboard=board, limit=3, strategy=strategy)
    assert [(e["user_id"], e["score"]) for e in served.entries] == [("b", 9), ("a", 3)]
    view = leaderboard_user_rank(leaderboard=board, user_id="a", around=0)
    assert (view.rank, view.total) == (2, 2)


def _assert_true(value: object) -> None:
    assert value
