"""Deleting a board in the admin: a light confirmation page, the board gone from the API
at once, its rows removed in chunks by a real worker, and its Redis keys cleaned."""

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from leaderboard_project.celery import app as celery_app
from rankings import cache, redis_keys
from rankings.deletion import board_delete_step, board_deletion_start
from rankings.models import Leaderboard, TopN
from scores.models import ApiKey, ProcessedEvent, Score
from scores.services import now_micros
from tasks.messages import Row, ScoreEvent, ingest_batch_payload
from tasks.queues import APPLY_EVENTS_TASK, ingest_queue_name
from tests.checks import dead_letters, eventually

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


@pytest.mark.pipeline
def test_a_board_deleted_under_a_workers_memo_costs_no_event_of_another_board(
    celery_workers, transactional_db, make_board, settings
):
    # Ingest trusts its boards memo for up to a second, so a batch may still name a board
    # whose row is gone and meet the foreign key at commit. Here the worker trusts it for
    # an hour, so every batch of the deleted board does.
    settings.LEADERBOARD_RANKING_STRATEGY = "merge_tree"
    celery_workers.stop()
    celery_workers.start("merge_tree", env={"LEADERBOARD_BOARD_MEMO_CHECK_SECONDS": "3600"})
    queue = ingest_queue_name(django_settings.LEADERBOARD_QUEUE_PREFIX, 0)
    doomed, keeper = make_board(slug="doomed"), make_board(slug="keeper")

    def send(board: Leaderboard, tag: str) -> None:
        event = ScoreEvent(board.id, tag, 1, tag, now_micros())
        celery_app.send_task(APPLY_EVENTS_TASK, args=[ingest_batch_payload([event])], queue=queue)

    def counted(board: Leaderboard, rows: int) -> None:
        assert Score.objects.filter(leaderboard_id=board.pk).count() == rows

    try:
        send(doomed, "warm-doomed")
        send(keeper, "warm-keeper")
        eventually(lambda: counted(doomed, 1))
        eventually(lambda: counted(keeper, 1))
        before = dead_letters()
        # Marked, emptied and gone, while the worker still holds the board in its memo.
        Leaderboard.objects.filter(pk=doomed.pk).update(deleting=True)
        while not board_delete_step(leaderboard_id=doomed.pk, chunk=1000, budget_seconds=10):
            pass
        for n in range(40):
            send(doomed if n % 2 else keeper, f"late-{n}")
        eventually(lambda: counted(keeper, 21), timeout=60)
        celery_workers.wait_idle()
        assert dead_letters() == before
        assert not Score.objects.filter(leaderboard_id=doomed.pk).exists()
        assert not ProcessedEvent.objects.filter(leaderboard_id=doomed.pk).exists()
    finally:
        celery_workers.stop()
