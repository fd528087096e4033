"""Deleting a board in the admin: a light confirmation page, the board gone from the API
at once, its rows removed in chunks by a real worker, and its Redis keys cleaned."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from rankings import cache, redis_keys
from rankings.deletion import board_delete_step, board_deletion_start
from rankings.models import Leaderboard, TopN
from scores.models import ApiKey, ProcessedEvent, Score
from tasks.messages import Row
from tests.checks import eventually

USERS = 20_000


def seed(board: Leaderboard, users: int) -> None:
    """Score rows and event ids in two statements, as a busy board would have."""
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO scores_score (user_id, leaderboard_id, period, score, sort_key, reached_at, version)
               SELECT 'u' || n, %s, %s, n, -n, now(), 1 FROM generate_series(1, %s) n""",
            [board.id, board.current_period(), users],
        )
        cursor.execute(
            """INSERT INTO scores_processedevent (user_id, leaderboard_id, event_id, applied_at)
               SELECT 'u' || n, %s, 'e' || n, now() FROM generate_series(1, %s) n""",
            [board.id, users],
        )
    client = cache.redis_client()
    period = board.current_period()
    cache.index_apply(client, board.id, period, [Row("u1", 1, 0, 1), Row("u2", 2, 0, 1)], True)
    cache.top_write(client, board.id, period, 1, 0, [])


def board_keys(board_id: int) -> list[bytes]:
    return list(cache.redis_client().scan_iter(match=redis_keys.board_prefix(board_id) + "*"))


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_deletes_a_board_in_the_background(worker, strategy, admin_client, api, make_board):
    board = make_board(slug="doomed")
    keeper = make_board(slug="keeper")
    seed(board, USERS)
    seed(keeper, 10)
    ApiKey.generate(name="doomed-writer", leaderboard=board)
    assert board_keys(board.id)
    url = reverse("admin:rankings_leaderboard_delete", args=[board.pk])

    with CaptureQueriesContext(connection) as page_queries:
        page = admin_client.get(url)
    assert page.status_code == 200
    assert b"removed in the background" in page.content
    touched = [q["sql"] for q in page_queries if "scores_score" in q["sql"] or "scores_processedevent" in q["sql"]]
    assert touched == [], touched

    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    board.refresh_from_db()
    assert board.deleting and board.slug.startswith("~")
    assert api.get("/api/v1/leaderboards/doomed/").status_code == 404
    assert [b["slug"] for b in api.get("/api/v1/leaderboards/").json()["results"]] == ["keeper"]

    def gone() -> None:
        assert not Leaderboard.objects.filter(pk=board.pk).exists()

    eventually(gone, timeout=120)
    assert Score.objects.filter(leaderboard_id=board.pk).count() == 0
    assert ProcessedEvent.objects.filter(leaderboard_id=board.pk).count() == 0
    assert not TopN.objects.filter(leaderboard_id=board.pk).exists()
    assert not ApiKey.objects.filter(leaderboard_id=board.pk).exists()
    assert board_keys(board.id) == []
    # The other board is untouched.
    assert Score.objects.filter(leaderboard=keeper).count() == 10
    assert board_keys(keeper.id)


def test_it_removes_the_rows_in_chunks_and_resumes(transactional_db, make_board):
    board = make_board(slug="big")
    seed(board, 5000)
    # Marked by hand, with no task queued: a worker left running by another test must not help.
    Leaderboard.objects.filter(pk=board.pk).update(deleting=True)
    # A budget of nothing: each step deletes one chunk, then hands over to the next run.
    steps = 0
    while not board_delete_step(leaderboard_id=board.pk, chunk=1000, budget_seconds=0):
        steps += 1
        assert steps < 50
    assert steps == 5 + 5  # 5 chunks of scores, 5 of event ids, then the board itself
    assert not Leaderboard.objects.filter(pk=board.pk).exists()
    assert board_keys(board.id) == []


def test_it_frees_the_slug_of_a_board_being_deleted(api, admin_key, make_board):
    board = make_board(slug="reborn")
    board_deletion_start(leaderboard=board)
    response = api.post(
        "/api/v1/leaderboards/",
        {"slug": "reborn", "name": "Again"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {admin_key}",
    )
    assert response.status_code == 201, response.content
    assert api.get("/api/v1/leaderboards/reborn/").json()["name"] == "Again"
