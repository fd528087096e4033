"""The merge levels, step by step on the real PostgreSQL and Redis: each step is run in
this process, in an order chosen by the test, so the interleavings that once gave wrong
answers (a candidate falling between its ingest commit and its root) are reproduced
exactly."""

import uuid

import pytest
from django_redis import get_redis_connection

from rankings import rounds
from rankings.models import Leaderboard, TopN
from rankings.selectors import leaderboard_top
from rankings.services import RoundPlan, ranking_handoff, round_plan, round_publish, rows_merge, span_merge
from scores.services import now_micros, score_events_apply
from tasks.messages import Merged, ScoreEvent
from tests.checks import db_top


@pytest.fixture(autouse=True)
def _merge_tree(settings, db: None) -> None:
    settings.LEADERBOARD_RANKING_STRATEGY = "merge_tree"
    # Board ids restart with each test database: forget what an earlier run left in Redis.
    get_redis_connection("default").flushdb()


def ingest(board: Leaderboard, *events: tuple, accepted_us: int | None = None) -> None:
    """One ingest message: apply it, then hand its rows to ranking (what apply_events does)."""
    stamp = accepted_us or now_micros()
    batch = [ScoreEvent(board.id, user, points, f"e-{uuid.uuid4().hex}", stamp) for user, points in events]
    ranking_handoff(changed=score_events_apply(events=batch), oldest_accepted_us=stamp)


def claim(board: Leaderboard) -> RoundPlan:
    return round_plan(leaderboard=board, period=board.current_period())


def finish(board: Leaderboard, plan: RoundPlan) -> None:
    """The rest of a root: merge the claimed round's spans and publish."""
    period = board.current_period()
    parts = [span_merge(leaderboard=board, period=period, spans=[s], number=n) for n, s in enumerate(plan.spans)]
    merged = rows_merge(leaderboard=board, parts=parts) if parts else Merged([], False, 0, [0])
    round_publish(leaderboard=board, period=period, candidates=merged, tokens=plan.tokens, spans=len(parts) or 1)


def published(board: Leaderboard) -> list[tuple[str, int]]:
    table = TopN.objects.get(leaderboard=board, period=board.current_period())
    served = leaderboard_top(leaderboard=board, limit=board.top_n, strategy="merge_tree")
    pairs = [(row[0], row[1]) for row in table.entries]
    assert [(e["user_id"], e["score"]) for e in served.entries] == pairs, "served top-N differs from the table"
    return pairs


def test_it_repairs_a_candidate_that_fell_before_its_root(make_board):
    board = make_board(top_n=1, min_points=-1000)
    ingest(board, ("a", 100), ("b", 90))  # its partial keeps only a
    plan = claim(board)
    ingest(board, ("a", -200))  # commits before the root that holds a=100 finishes
    finish(board, plan)
    assert published(board) == [("b", 90)] == db_top(board)


def test_it_repairs_a_user_who_fell_between_two_partials_of_one_round(make_board):
    board = make_board(top_n=1, min_points=-1000)
    ingest(board, ("a", 100), ("b", 90))
    ingest(board, ("a", -200))
    finish(board, claim(board))
    assert published(board) == [("b", 90)] == db_top(board)


def test_it_repairs_a_last_board_whose_candidate_was_overwritten(make_board):
    board = make_board(top_n=1, aggregation="last")
    ingest(board, ("a", 100), ("b", 90))
    plan = claim(board)
    ingest(board, ("a", 5))
    finish(board, plan)
    assert published(board) == [("b", 90)] == db_top(board)


def test_it_repairs_a_member_who_fell_in_a_later_round(make_board):
    board = make_board(top_n=2, min_points=-1000)
    ingest(board, ("a", 100), ("b", 90), ("c", 80))
    finish(board, claim(board))
    assert published(board) == [("a", 100), ("b", 90)]
    ingest(board, ("a", -500))
    finish(board, claim(board))
    assert published(board) == [("b", 90), ("c", 80)] == db_top(board)


def test_it_merges_many_partials_of_one_round_into_the_true_top(make_board):
    board = make_board(top_n=3)
    for n in range(12):
        ingest(board, (f"u{n}", n * 7 % 13), (f"v{n}", n))
    plan = claim(board)
    assert len(plan.spans) == 4  # 12 partials, fan-in 3 (tests/settings.py)
    finish(board, plan)
    assert published(board) == db_top(board)


def test_it_leaves_a_claimed_round_to_be_taken_over_when_its_root_dies(make_board, settings):
    settings.LEADERBOARD_ROUND_TAKEOVER_MS = 0
    board = make_board(top_n=2)
    ingest(board, ("a", 5), ("b", 3))
    lost = claim(board)  # this root dies: it never publishes nor forgets its round
    ingest(board, ("c", 4))
    plan = claim(board)
    assert set(lost.tokens) <= set(plan.tokens), "the dead root's round was not taken over"
    finish(board, plan)
    assert published(board) == [("a", 5), ("c", 4)] == db_top(board)
    client = get_redis_connection("default")
    assert rounds.board_rounds_state(client, board.id, board.current_period()) == (False, 0)


def test_it_claims_one_root_per_window(make_board, settings):
    settings.LEADERBOARD_MERGE_WINDOW_MS = 60_000
    board = make_board()
    client = get_redis_connection("default")
    claimed = [rounds.root_claim(client, board.id, board.current_period(), 60_000) for _ in range(5)]
    ingest(board, ("a", 1))  # the push finds the window claimed: it schedules nothing
    assert claimed == [True, False, False, False, False]
    assert rounds.board_rounds_state(client, board.id, board.current_period()) == (True, 0)


def test_it_keeps_a_round_whose_merge_came_back_short(make_board, settings):
    settings.LEADERBOARD_ROUND_TAKEOVER_MS = 0
    board = make_board(top_n=5)
    for n in range(6):
        ingest(board, (f"u{n}", n + 1))
    plan = claim(board)
    assert len(plan.spans) == 2
    period = board.current_period()
    # A chord that fired with one member's result only: published, but the round stays.
    short = span_merge(leaderboard=board, period=period, spans=[plan.spans[0]], number=0)
    round_publish(leaderboard=board, period=period, candidates=short, tokens=plan.tokens, spans=2)
    client = get_redis_connection("default")
    assert rounds.board_rounds_state(client, board.id, period) == (False, 1)
    finish(board, claim(board))
    assert published(board) == db_top(board)
    assert rounds.board_rounds_state(client, board.id, period) == (False, 0)


def test_the_sweeper_forgets_an_idle_board_and_keeps_one_with_partials(make_board, settings):
    settings.LEADERBOARD_ROUND_TAKEOVER_MS = 0
    board = make_board(top_n=3)
    client = get_redis_connection("default")
    period = board.current_period()
    ingest(board, ("a", 5))
    assert (board.id, period) in rounds.boards_with_rounds(client)
    assert not rounds.board_rounds_forget_if_idle(client, board.id, period)  # a partial waits
    assert (board.id, period) in rounds.boards_with_rounds(client)
    finish(board, claim(board))
    assert rounds.board_rounds_forget_if_idle(client, board.id, period)
    assert (board.id, period) not in rounds.boards_with_rounds(client)
    ingest(board, ("b", 7))  # the next push adds it again
    assert (board.id, period) in rounds.boards_with_rounds(client)
