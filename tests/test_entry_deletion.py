"""Deleting one user's entry on one board (``DELETE …/{slug}/users/{id}``): through the
real pipeline per strategy, the ingest side of its tombstone, and its refusals."""

import pytest
from django.conf import settings

from rankings.models import Leaderboard
from scores.models import ApiKey, DeletedEntry, ProcessedEvent, Score
from scores.services import now_micros, score_events_apply
from scores.tombstones import ErasureInProgress
from tasks.messages import ScoreEvent
from tasks.queues import QueueRole, role_queue_name
from tests.checks import db_scores, eventually
from tests.conftest import bearer
from tests.test_erasure import assert_gone_everywhere, submit
from tests.test_hiding import settled


def delete_entry(api, admin_key: str, board: Leaderboard, user_id: str) -> None:
    response = bearer(api, admin_key).delete(f"/api/v1/leaderboards/{board.slug}/users/{user_id}")
    assert response.status_code == 202, response.content
    assert response.json() == {"user_id": user_id, "status": "deleting"}


def finished(board: Leaderboard, user_id: str) -> None:
    assert DeletedEntry.objects.get(user_id=user_id, leaderboard_id=board.id).finished_at is not None
    assert not Score.objects.filter(user_id=user_id, leaderboard=board).exists()


@pytest.mark.pipeline
def test_it_deletes_an_entry_on_one_board_and_leaves_the_others(worker, make_board, api, admin_key):
    first, second = make_board(top_n=2), make_board(top_n=2)
    submit(first, ("a", 30, "e1"), ("b", 50, "e2"), ("c", 10, "e3"))
    submit(second, ("b", 5, "e4"), ("c", 7, "e5"))
    settled(first, {"a": 30, "b": 50, "c": 10}, ["a", "b", "c"])
    settled(second, {"b": 5, "c": 7}, ["b", "c"])

    delete_entry(api, admin_key, first, "b")
    eventually(lambda: finished(first, "b"))
    assert not ProcessedEvent.objects.filter(user_id="b", leaderboard=first).exists()
    settled(first, {"a": 30, "c": 10}, ["a", "c"])  # b led it: the top-N was repaired
    assert_gone_everywhere(api, [first], "b", {first: {"a": 30, "c": 10}})
    # The other board keeps b, and b's event ids there.
    settled(second, {"b": 5, "c": 7}, ["b", "c"])
    assert ProcessedEvent.objects.filter(user_id="b", leaderboard=second).count() == 1

    # An event accepted after the deletion counts afresh, from zero (its id too: the old
    # one was forgotten with the entry).
    submit(first, ("b", 4, "e2"))
    settled(first, {"a": 30, "b": 4, "c": 10}, ["a", "b", "c"])


@pytest.mark.pipeline
def test_it_drops_an_event_accepted_before_the_deletion_and_applied_after(
    worker, celery_workers, make_board, api, admin_key, strategy
):
    board = make_board(top_n=2)
    submit(board, ("a", 30, "e1"), ("b", 50, "e2"))
    settled(board, {"a": 30, "b": 50}, ["a", "b"])
    celery_workers.stop()  # accepted now, applied after the deletion ran to its end
    submit(board, ("b", 1000, "late"), ("a", 1, "a-late"))
    delete_entry(api, admin_key, board, "b")
    maintenance = role_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, QueueRole.MAINTENANCE)
    celery_workers.start(strategy, name="maintenance", queues=[maintenance])
    eventually(lambda: finished(board, "b"))
    celery_workers.stop()
    celery_workers.ensure(strategy)
    settled(board, {"a": 31}, ["a"])
    assert_gone_everywhere(api, [board], "b", {board: {"a": 31}})


def _event(board: Leaderboard, user_id: str, points: int, event_id: str, accepted_us: int) -> ScoreEvent:
    return ScoreEvent(board.id, user_id, points, event_id, accepted_us)


def test_ingest_drops_the_entrys_older_events_on_its_board_only(transactional_db, make_board):
    board, other = make_board(), make_board()
    deleted_us = now_micros()
    DeletedEntry.objects.create(
        user_id="gone", leaderboard_id=board.id, deleted_us=deleted_us, requested_at="2026-01-01T00:00:00Z"
    )
    changed = score_events_apply(
        events=[_event(board, "gone", 5, "old", deleted_us), _event(other, "gone", 3, "o1", deleted_us)]
    )
    assert [(c.leaderboard_id, c.row.user_id) for c in changed] == [(other.id, "gone")]
    assert db_scores(board) == {} and db_scores(other) == {"gone": 3}
    # A later event on the board waits while the deletion runs, and counts once finished.
    with pytest.raises(ErasureInProgress):
        score_events_apply(events=[_event(board, "gone", 7, "new", deleted_us + 1)])
    DeletedEntry.objects.filter(user_id="gone").update(finished_at="2026-01-01T00:00:01Z")
    score_events_apply(events=[_event(board, "gone", 7, "new", deleted_us + 1)])
    assert db_scores(board) == {"gone": 7}


def test_it_refuses_deleting_an_entry_without_an_admin_key_or_with_bad_input(api, admin_key, make_board):
    board = make_board(slug="guarded")
    url = f"/api/v1/leaderboards/{board.slug}/users/a"
    writer = ApiKey.generate(name="writer", leaderboard=board)[1]
    assert api.delete(url).status_code == 401
    assert bearer(api, writer).delete(url).status_code == 403
    api.credentials()
    admin = bearer(api, admin_key)
    assert admin.delete("/api/v1/leaderboards/nope/users/a").status_code == 404
    response = admin.delete(f"/api/v1/leaderboards/{board.slug}/users/a%20b")
    assert response.status_code == 400 and "user_id" in response.json()
    response = admin.delete(url, {"why": "cheat"}, format="json")
    assert response.status_code == 400 and "Unknown field" in response.json()["why"][0]
    assert not DeletedEntry.objects.exists()
