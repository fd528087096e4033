"""Ranking semantics through the real pipeline (broker, worker, Postgres, Redis), per strategy."""

import pytest
from django.conf import settings

from leaderboard_project.celery import app as celery_app
from rankings.models import Leaderboard
from scores.partitioning import partition_of
from scores.services import now_micros, score_events_submit
from tasks.messages import ScoreEvent, ingest_batch_payload
from tasks.queues import APPLY_EVENTS_TASK, ingest_queue_name
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores, db_top, eventually

pytestmark = pytest.mark.pipeline


def submit(board: Leaderboard, *events: tuple) -> None:
    payload = []
    for event in events:
        user_id, points, *event_id = event
        payload.append({"user_id": user_id, "points": points, **({"event_id": event_id[0]} if event_id else {})})
    assert score_events_submit(leaderboard=board, events=payload) == len(payload)


def settle(board: Leaderboard, expected: dict[str, int]) -> None:
    def check() -> None:
        assert db_scores(board) == expected
        assert_top_consistent(board)
        assert_ranks_consistent(board, sorted(expected))

    eventually(check)


def test_it_replaces_a_fallen_top_member_with_the_next_best(worker, make_board):
    board = make_board(top_n=3, min_points=-1000)
    submit(board, ("a", 100), ("b", 90), ("c", 80), ("d", 70))
    settle(board, {"a": 100, "b": 90, "c": 80, "d": 70})
    assert db_top(board) == [("a", 100), ("b", 90), ("c", 80)]

    submit(board, ("a", -50))
    settle(board, {"a": 50, "b": 90, "c": 80, "d": 70})
    assert db_top(board) == [("b", 90), ("c", 80), ("d", 70)]


def test_it_gives_a_tie_to_who_reached_the_score_first(worker, make_board):
    board = make_board()
    submit(board, ("zed", 10))
    settle(board, {"zed": 10})
    submit(board, ("amy", 10))
    settle(board, {"zed": 10, "amy": 10})
    assert db_top(board) == [("zed", 10), ("amy", 10)]


def test_it_breaks_a_tie_within_one_batch_by_user_id(worker, make_board, settings):
    board = make_board()
    partitions = settings.LEADERBOARD_INGEST_PARTITIONS
    # Two users of one partition share a message, a transaction and so a reached_at.
    first = "user-0"
    second = next(
        f"user-{n}" for n in range(1, 1000) if partition_of(f"user-{n}", partitions) == partition_of(first, partitions)
    )
    submit(board, (second, 7), (first, 7))
    settle(board, {first: 7, second: 7})
    assert db_top(board) == sorted([(first, 7), (second, 7)])


def test_it_ranks_an_asc_board_lowest_first(worker, make_board):
    board = make_board(order="asc")
    submit(board, ("slow", 300), ("fast", 120), ("mid", 200))
    settle(board, {"slow": 300, "fast": 120, "mid": 200})
    assert db_top(board) == [("fast", 120), ("mid", 200), ("slow", 300)]


def test_it_keeps_the_best_value_on_a_best_board(worker, make_board):
    board = make_board(aggregation="best")
    submit(board, ("zed", 10), ("amy", 4))
    settle(board, {"zed": 10, "amy": 4})
    submit(board, ("zed", 3), ("amy", 10))
    settle(board, {"zed": 10, "amy": 10})
    # zed's 3 left the score as it was, so zed still reached 10 first.
    assert db_top(board) == [("zed", 10), ("amy", 10)]


def test_it_keeps_the_lowest_value_on_an_asc_best_board(worker, make_board):
    board = make_board(aggregation="best", order="asc")
    submit(board, ("a", 50), ("b", 40))
    settle(board, {"a": 50, "b": 40})
    submit(board, ("a", 30), ("b", 45))
    settle(board, {"a": 30, "b": 40})
    assert db_top(board) == [("a", 30), ("b", 40)]


def test_it_keeps_the_last_value_on_a_last_board_even_when_it_falls(worker, make_board):
    board = make_board(aggregation="last", top_n=2)
    submit(board, ("a", 100), ("b", 80), ("c", 60))
    settle(board, {"a": 100, "b": 80, "c": 60})
    submit(board, ("a", 10))
    settle(board, {"a": 10, "b": 80, "c": 60})
    assert db_top(board) == [("b", 80), ("c", 60)]


def test_it_applies_a_repeated_event_id_once(worker, make_board):
    board = make_board()
    submit(board, ("a", 5, "e1"), ("a", 5, "e1"), ("a", 7, "e2"))
    submit(board, ("a", 5, "e1"), ("b", 1, "e1"))
    settle(board, {"a": 12, "b": 1})


def publish_stamped(board: Leaderboard, *events: tuple[str, int, str, int]) -> None:
    """One ingest message whose events carry accepted times chosen by the test."""
    batch = [ScoreEvent(board.id, user, points, event_id, accepted) for user, points, event_id, accepted in events]
    queue = ingest_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, 0)
    celery_app.send_task(APPLY_EVENTS_TASK, args=[ingest_batch_payload(batch)], queue=queue)


def test_it_keeps_the_later_accepted_value_on_a_last_board_applied_in_reverse(worker, make_board):
    board = make_board(aggregation="last")
    t = now_micros()
    publish_stamped(board, ("a", 7, "second", t + 1000))
    settle(board, {"a": 7})
    publish_stamped(board, ("a", 3, "first", t))  # accepted earlier, applied later: loses
    publish_stamped(board, ("b", 1, "x", t))
    settle(board, {"a": 7, "b": 1})


def test_it_breaks_a_last_writer_tie_of_one_accepted_time_by_event_id(worker, make_board):
    board = make_board(aggregation="last")
    t = now_micros()
    publish_stamped(board, ("a", 5, "e2", t))
    publish_stamped(board, ("a", 9, "e1", t))
    publish_stamped(board, ("b", 1, "x", t))
    settle(board, {"a": 5, "b": 1})


def test_it_gives_a_tie_to_the_earlier_accepted_event_whatever_the_apply_order(worker, make_board):
    board = make_board()
    t = now_micros()
    publish_stamped(board, ("zed", 10, "z1", t + 5000))
    settle(board, {"zed": 10})
    publish_stamped(board, ("amy", 10, "a1", t))  # applied after zed, accepted before
    settle(board, {"zed": 10, "amy": 10})
    assert db_top(board) == [("amy", 10), ("zed", 10)]


def test_it_stamps_a_best_score_with_the_earliest_event_that_reached_it(worker, make_board):
    board = make_board(aggregation="best")
    t = now_micros()
    publish_stamped(board, ("zed", 10, "z-late", t + 9000), ("amy", 10, "a1", t + 5000))
    settle(board, {"zed": 10, "amy": 10})
    publish_stamped(board, ("zed", 10, "z-early", t))  # same best, reached earlier
    eventually(lambda: _assert_equal(db_top(board), [("zed", 10), ("amy", 10)]))
    settle(board, {"zed": 10, "amy": 10})


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected
