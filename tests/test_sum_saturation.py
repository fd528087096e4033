"""Saturated "sum" totals do not depend on how the events were batched into messages."""

import pytest

from rankings.ordering import INT64_MAX
from scores.models import Score
from scores.services import score_events_apply
from tasks.messages import ScoreEvent

pytestmark = pytest.mark.django_db


def _apply_in(board, batches: list[list[int]], user: str) -> int:
    counter = 0
    for batch in batches:
        events = []
        for points in batch:
            counter += 1
            events.append(ScoreEvent(board.id, user, points, f"e{counter}", 1_700_000_000_000_000 + counter))
        score_events_apply(events=events)
    return Score.objects.get(leaderboard=board, user_id=user).score


@pytest.mark.parametrize(
    ("batchings", "expected"),
    [
        # The case: stored -5, then +MAX and +10 in one message or in two.
        ([[[-5], [INT64_MAX, 10]], [[-5], [INT64_MAX], [10]], [[-5, INT64_MAX, 10]]], INT64_MAX),
        # Beyond the range and back: the exact total, not a total clamped on the way.
        ([[[INT64_MAX], [10], [-20]], [[INT64_MAX, 10], [-20]], [[INT64_MAX, 10, -20]]], INT64_MAX - 10),
        ([[[INT64_MAX], [INT64_MAX], [-INT64_MAX]], [[INT64_MAX, INT64_MAX, -INT64_MAX]]], INT64_MAX),
        ([[[-INT64_MAX], [-7], [INT64_MAX]], [[-INT64_MAX, -7], [INT64_MAX]]], -7),
    ],
)
def test_it_gives_one_total_however_the_events_are_batched(make_board, batchings, expected):
    board = make_board(min_points=-INT64_MAX, max_points=INT64_MAX)
    totals = [_apply_in(board, batches, f"user{n}") for n, batches in enumerate(batchings)]
    assert totals == [expected] * len(batchings)


def test_it_keeps_the_exact_total_only_while_it_is_out_of_range(make_board):
    board = make_board(min_points=-INT64_MAX, max_points=INT64_MAX)
    assert _apply_in(board, [[INT64_MAX], [INT64_MAX]], "u") == INT64_MAX
    row = Score.objects.get(leaderboard=board, user_id="u")
    assert row.exact_total == 2 * INT64_MAX
    assert row.sort_key == -INT64_MAX
    score_events_apply(events=[ScoreEvent(board.id, "u", -INT64_MAX, "back", 1_800_000_000_000_000)])
    row.refresh_from_db()
    assert (row.score, row.exact_total) == (INT64_MAX, None)
