"""Changing and deleting a board through the API (admin key): PATCH of its name, size and
points range, the fixed fields refused by name, a larger top-N exact through the real
pipeline, DELETE gone at once and cleaned in the background, a lost clean-up resumed."""

import pytest

from rankings.deletion import board_deletions_resume
from rankings.models import Leaderboard
from scores.models import ApiKey, Score
from scores.services import score_events_submit
from tests.checks import assert_top_consistent, db_scores, eventually
from tests.conftest import bearer

FIXED = {
    "slug": "other",
    "order": "asc",
    "aggregation": "best",
    "reset": "daily",
    "reset_timezone": "Europe/Berlin",
    "keep_periods": 3,
}


def detail(board: Leaderboard) -> str:
    return f"/api/v1/leaderboards/{board.slug}/"


def test_it_changes_the_name_size_and_points_range(api, admin_key, make_board):
    board = make_board(slug="tuned", name="Old", top_n=10, min_points=0, max_points=100)
    response = bearer(api, admin_key).patch(
        detail(board), {"name": "New", "top_n": 20, "min_points": -5, "max_points": 500}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["slug"], body["name"], body["top_n"], body["min_points"], body["max_points"]) == (
        "tuned",
        "New",
        20,
        -5,
        500,
    )
    assert api.get(detail(board)).json() == body
    # The new range is the one a score is checked against.
    scores = f"/api/v1/leaderboards/{board.slug}/scores"
    assert bearer(api, admin_key).post(scores, {"user_id": "a", "points": 400}, format="json").status_code == 202
    assert bearer(api, admin_key).post(scores, {"user_id": "a", "points": 501}, format="json").status_code == 400


@pytest.mark.parametrize(("field", "value"), FIXED.items())
def test_it_refuses_a_field_fixed_once_the_board_exists_naming_it(api, admin_key, make_board, field, value):
    board = make_board(slug="fixed", name="Kept")
    before = Leaderboard.objects.filter(pk=board.pk).values().get()
    response = bearer(api, admin_key).patch(detail(board), {field: value, "name": "Changed"}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["Fixed once the leaderboard is created."]}
    assert Leaderboard.objects.filter(pk=board.pk).values().get() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"top_n": 0}, "top_n"),
        ({"top_n": 1001}, "top_n"),
        ({"top_n": "5"}, "top_n"),
        ({"name": ""}, "name"),
        ({"min_points": 200}, "min_points"),  # above the board's max_points (100)
        ({"max_points": -1}, "max_points"),  # below its min_points (0)
        ({"min_points": 10, "max_points": 5}, "max_points"),
        ({"nmae": "typo"}, "nmae"),
    ],
)
def test_it_refuses_bad_values_naming_the_field_and_changes_nothing(api, admin_key, make_board, body, field):
    board = make_board(slug="strict", max_points=100)
    before = Leaderboard.objects.filter(pk=board.pk).values().get()
    response = bearer(api, admin_key).patch(detail(board), body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert Leaderboard.objects.filter(pk=board.pk).values().get() == before


def test_it_takes_an_admin_key_to_change_or_delete_a_board(api, db, make_board):
    board = make_board(slug="guarded")
    writer = ApiKey.generate(name="writer", leaderboard=board)[1]
    for method in ("patch", "delete"):
        assert getattr(api, method)(detail(board), {"name": "x"}, format="json").status_code == 401
        assert getattr(bearer(api, writer), method)(detail(board), {"name": "x"}, format="json").status_code == 403
        api.credentials()
    assert Leaderboard.objects.get(pk=board.pk).name == board.name and not Leaderboard.objects.get(pk=board.pk).deleting


def test_it_answers_404_for_an_unknown_board(api, admin_key, db):
    for method in ("patch", "delete"):
        response = getattr(bearer(api, admin_key), method)("/api/v1/leaderboards/nope/", {"name": "x"}, format="json")
        assert response.status_code == 404 and "nope" in response.json()["detail"]


@pytest.mark.pipeline
def test_a_larger_top_n_is_exact_at_once_and_after_more_events(worker, strategy, api, admin_key, make_board):
    board = make_board(slug="grown", top_n=3)
    score_events_submit(leaderboard=board, events=[{"user_id": f"u{n}", "points": n + 1} for n in range(10)])

    def applied() -> None:
        assert len(db_scores(board)) == 10
        assert_top_consistent(board)

    eventually(applied)
    assert len(api.get(f"/api/v1/leaderboards/{board.slug}/top", {"limit": 3}).json()["entries"]) == 3

    response = bearer(api, admin_key).patch(detail(board), {"top_n": 8}, format="json")
    assert response.status_code == 200 and response.json()["top_n"] == 8
    board.refresh_from_db()
    top = api.get(f"/api/v1/leaderboards/{board.slug}/top", {"limit": 8}).json()["entries"]
    assert [(e["user_id"], e["score"]) for e in top] == [(f"u{n}", n + 1) for n in range(9, 1, -1)]

    # Events after the change: the pipeline keeps eight.
    score_events_submit(leaderboard=board, events=[{"user_id": "u0", "points": 100}, {"user_id": "new", "points": 5}])

    def settled() -> None:
        assert db_scores(board)["u0"] == 101
        assert_top_consistent(board)

    eventually(settled)
    assert len(api.get(f"/api/v1/leaderboards/{board.slug}/top", {"limit": 8}).json()["entries"]) == 8


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_deletes_a_board_at_once_for_readers_and_in_the_background_for_its_rows(worker, api, admin_key, make_board):
    board = make_board(slug="doomed")
    keeper = make_board(slug="keeper")
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 1}])
    score_events_submit(leaderboard=keeper, events=[{"user_id": "a", "points": 2}])
    eventually(lambda: _equal(Score.objects.count(), 2))

    response = bearer(api, admin_key).delete(detail(board))
    assert response.status_code == 202
    assert response.json() == {"leaderboard": "doomed", "status": "deleting"}
    assert api.get(detail(board)).status_code == 404
    assert api.get(f"/api/v1/leaderboards/{board.slug}/top").status_code == 404
    eventually(lambda: _equal(Leaderboard.objects.filter(pk=board.pk).exists(), False))
    assert not Score.objects.filter(leaderboard_id=board.pk).exists()
    assert db_scores(keeper) == {"a": 2}
    assert bearer(api, admin_key).delete(detail(board)).status_code == 404


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_resumes_a_deletion_whose_task_was_lost(worker, make_board):
    board = make_board(slug="stranded")
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 1}])
    eventually(lambda: _equal(Score.objects.filter(leaderboard=board).count(), 1))
    Leaderboard.objects.filter(pk=board.pk).update(deleting=True)  # marked, no task sent
    assert board_deletions_resume() == 1
    assert board_deletions_resume() == 0  # its task is on its way: not sent twice
    eventually(lambda: _equal(Leaderboard.objects.filter(pk=board.pk).exists(), False))
    assert not Score.objects.filter(leaderboard_id=board.pk).exists()


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
