"""A board reset by hand (``reset: "manual"``): versions v1, v2, … through the real API
and pipeline; events count by their accepted time, however late they are applied; the
closed version stays readable and is closed by the period upkeep."""

import time

import pytest

from rankings.models import Leaderboard
from rankings.period_upkeep import periods_upkeep
from scores.models import ApiKey
from tests.checks import db_scores, eventually
from tests.conftest import bearer


def _post(api, admin_key: str, slug: str, events: list[tuple[str, int]]) -> None:
    body = {"events": [{"user_id": user, "points": points} for user, points in events]}
    response = bearer(api, admin_key).post(f"/api/v1/leaderboards/{slug}/scores", body, format="json")
    assert response.status_code == 202, response.content


def _top(api, slug: str, period: str | None = None) -> list[tuple[str, int]]:
    query = {"limit": 10, **({"period": period} if period else {})}
    response = api.get(f"/api/v1/leaderboards/{slug}/top", query)
    assert response.status_code == 200, response.content
    return [(e["user_id"], e["score"]) for e in response.json()["entries"]]


def _reset(api, admin_key: str, slug: str) -> dict:
    started = time.monotonic()
    response = bearer(api, admin_key).post(f"/api/v1/leaderboards/{slug}/reset")
    assert response.status_code == 200, response.content
    assert time.monotonic() - started >= 1  # it answers once the reset has taken effect
    return response.json()


@pytest.mark.pipeline
def test_a_manual_board_counts_each_event_in_the_version_it_was_accepted_in(
    worker, celery_workers, strategy, api, admin_key, settings
):
    created = bearer(api, admin_key).post(
        "/api/v1/leaderboards/", {"slug": "season", "name": "Season", "reset": "manual"}, format="json"
    )
    assert created.status_code == 201 and created.json()["reset"] == "manual", created.content
    board = Leaderboard.objects.get(slug="season")
    assert api.get("/api/v1/leaderboards/season/periods").json()["current"] == "v1"
    _post(api, admin_key, "season", [("a", 5), ("b", 3)])
    eventually(lambda: _equal(_top(api, "season"), [("a", 5), ("b", 3)]))

    # Accepted before the reset, applied after it (no worker meanwhile): it counts in v1.
    celery_workers.stop()
    _post(api, admin_key, "season", [("b", 10)])
    assert _reset(api, admin_key, "season") == {"leaderboard": "season", "closed": "v1", "current": "v2"}
    celery_workers.ensure(strategy)
    _post(api, admin_key, "season", [("a", 1), ("c", 7)])

    eventually(lambda: _equal(_top(api, "season"), [("c", 7), ("a", 1)]))
    eventually(lambda: _equal(_top(api, "season", "v1"), [("b", 13), ("a", 5)]))
    board.refresh_from_db()
    assert db_scores(board) == {"a": 1, "c": 7}  # the current version's rows
    mine = api.get("/api/v1/leaderboards/season/users/b", {"period": "v1"}).json()
    assert (mine["rank"], mine["score"]) == (1, 13)
    assert api.get("/api/v1/leaderboards/season/users/b").status_code == 404  # nothing in v2
    listed = api.get("/api/v1/leaderboards/season/periods").json()
    assert listed["current"] == "v2"
    assert [(p["key"], p["closed"], p["ends_at"] is None) for p in listed["periods"]] == [
        ("v2", False, True),
        ("v1", False, False),
    ]

    # The upkeep stores v1's final top-N once its grace has passed.
    settings.LEADERBOARD_PERIOD_CLOSE_GRACE_SECONDS = 0
    eventually(lambda: _equal("season/v1" in periods_upkeep(budget_seconds=5).closed, True))
    assert [p["closed"] for p in api.get("/api/v1/leaderboards/season/periods").json()["periods"]] == [False, True]
    assert _top(api, "season", "v1") == [("b", 13), ("a", 5)]

    assert _reset(api, admin_key, "season")["current"] == "v3"
    assert api.get("/api/v1/leaderboards/season/top", {"period": "v4"}).status_code == 404


def test_it_refuses_a_reset_of_a_board_that_is_not_manual(api, admin_key, make_board):
    board = make_board(slug="daily", reset="daily")
    response = bearer(api, admin_key).post(f"/api/v1/leaderboards/{board.slug}/reset")
    assert response.status_code == 400
    assert list(response.json()) == ["reset"] and "manual" in response.json()["reset"][0]
    assert Leaderboard.objects.get(pk=board.pk).manual_resets == []


def test_it_takes_an_admin_key_and_no_body_to_reset(api, admin_key, make_board):
    board = make_board(slug="guarded", reset="manual")
    url = f"/api/v1/leaderboards/{board.slug}/reset"
    assert api.post(url).status_code == 401
    writer = ApiKey.generate(name="writer", leaderboard=board)[1]
    assert bearer(api, writer).post(url).status_code == 403
    api.credentials()
    assert bearer(api, admin_key).post("/api/v1/leaderboards/nope/reset").status_code == 404
    response = bearer(api, admin_key).post(url, {"at": "now"}, format="json")
    assert response.status_code == 400 and "at" in response.json()
    assert Leaderboard.objects.get(pk=board.pk).manual_resets == []


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
