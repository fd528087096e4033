"""Erasing a user on every board: through the real pipeline (broker, workers, Postgres,
Redis), per strategy; the ingest side of the tombstone; the endpoint's refusals."""

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from rankings import cache
from rankings.erasure import user_erase_step, user_erasure_start
from rankings.hiding import user_hide
from rankings.models import HiddenUser, Leaderboard
from scores.models import ErasedUser, ProcessedEvent, Score
from scores.services import now_micros, score_events_apply, score_events_submit
from scores.tombstones import ErasureInProgress
from tasks.messages import ScoreEvent
from tasks.queues import QueueRole, role_queue_name
from tests.checks import eventually
from tests.conftest import bearer
from tests.test_hiding import assert_index_counters_agree, reads, settled


def submit(board: Leaderboard, *events: tuple[str, int, str]) -> None:
    payload = [{"user_id": user_id, "points": points, "event_id": event_id} for user_id, points, event_id in events]
    assert score_events_submit(leaderboard=board, events=payload) == len(payload)


def erase(api, admin_key: str, user_id: str) -> dict:
    response = bearer(api, admin_key).delete(f"/api/v1/users/{user_id}")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["user_id"], body["status"]) == (user_id, "erasing")
    return body


def erased_and_finished(user_id: str) -> None:
    tombstone = ErasedUser.objects.get(user_id=user_id)
    assert tombstone.finished_at is not None
    assert not Score.objects.filter(user_id=user_id).exists()


def assert_gone_everywhere(api, boards: list[Leaderboard], user_id: str, others: dict[Leaderboard, dict]) -> None:
    for board in boards:
        assert api.get(f"/api/v1/leaderboards/{board.slug}/users/{user_id}").status_code == 404
        seen = reads(api, board, ",".join([user_id, *others[board]]))
        assert user_id not in {u for part in ("top", "ranks", "users") for _, u, _ in seen[part]}
        expected = sorted(others[board].items(), key=lambda item: -item[1])
        assert seen["ranks"] == [(rank, u, s) for rank, (u, s) in enumerate(expected, 1)]
        assert seen["total"] == len(expected)
        assert_index_counters_agree(board)


@pytest.mark.pipeline
def test_it_erases_a_user_on_every_board(worker, make_board, api, admin_key):
    first, second = make_board(top_n=2), make_board(top_n=2)
    submit(first, ("a", 30, "e1"), ("b", 50, "e2"), ("c", 10, "e3"))
    submit(second, ("b", 5, "e4"), ("c", 7, "e5"), ("a", 1, "e6"))
    settled(first, {"a": 30, "b": 50, "c": 10}, ["a", "b", "c"])
    settled(second, {"a": 1, "b": 5, "c": 7}, ["a", "b", "c"])
    user_hide(leaderboard=second, user_id="b")  # the erasure takes this too

    erase(api, admin_key, "b")
    eventually(lambda: erased_and_finished("b"))
    assert not ProcessedEvent.objects.filter(user_id="b").exists()
    assert ProcessedEvent.objects.filter(user_id="a").count() == 2
    assert not HiddenUser.objects.filter(user_id="b").exists()
    others = {first: {"a": 30, "c": 10}, second: {"c": 7, "a": 1}}
    # The others closed up, the top-Ns were repaired (b led the first board).
    settled(first, others[first], ["a", "c"])
    settled(second, others[second], ["a", "c"])
    assert_gone_everywhere(api, [first, second], "b", others)

    # An event accepted after the erasure counts again: the user came back, from zero.
    submit(first, ("b", 4, "e2"))
    settled(first, {"a": 30, "b": 4, "c": 10}, ["a", "b", "c"])


@pytest.mark.pipeline
def test_it_takes_an_erased_user_out_of_the_hidden_set_of_a_board_where_they_have_no_rows(
    worker, make_board, api, admin_key
):
    scored, empty = make_board(), make_board()
    submit(scored, ("a", 3, "e1"), ("b", 5, "e2"))
    settled(scored, {"a": 3, "b": 5}, ["b", "a"])
    user_hide(leaderboard=empty, user_id="b")  # hidden where they never scored
    assert "b" in cache.hidden_members(cache.redis_client(), empty.id)

    erase(api, admin_key, "b")
    eventually(lambda: erased_and_finished("b"))
    assert not HiddenUser.objects.filter(user_id="b").exists()
    # The database hides nobody there now, and neither does Redis.
    assert cache.hidden_members(cache.redis_client(), empty.id) == set()
    assert cache.hidden_members(cache.redis_client(), scored.id) == set()


@pytest.mark.pipeline
def test_it_drops_an_event_accepted_before_the_erasure_and_applied_after(
    worker, celery_workers, make_board, api, admin_key, strategy
):
    board = make_board(top_n=2)
    submit(board, ("a", 30, "e1"), ("b", 50, "e2"), ("c", 10, "e3"))
    settled(board, {"a": 30, "b": 50, "c": 10}, ["a", "b", "c"])

    # Accepted now, applied only after the erasure was asked for: no worker runs meanwhile.
    celery_workers.stop()
    submit(board, ("b", 1000, "late"), ("a", 1, "a-late"))
    erase(api, admin_key, "b")
    # The erasure runs to its end first (a worker on the maintenance queue alone), then
    # the ingest worker applies the older event: it must not bring b back.
    maintenance = role_queue_name(settings.LEADERBOARD_QUEUE_PREFIX, QueueRole.MAINTENANCE)
    celery_workers.start(strategy, name="maintenance", queues=[maintenance])
    eventually(lambda: erased_and_finished("b"))
    assert Score.objects.get(user_id="a").score == 30
    celery_workers.stop()
    celery_workers.ensure(strategy)
    settled(board, {"a": 31, "c": 10}, ["a", "c"])
    assert_gone_everywhere(api, [board], "b", {board: {"a": 31, "c": 10}})
    assert not ErasedUser.objects.get(user_id="b").pending


def _event(board: Leaderboard, user_id: str, points: int, event_id: str, accepted_us: int) -> ScoreEvent:
    return ScoreEvent(board.id, user_id, points, event_id, accepted_us)


def test_it_drops_erased_events_in_ingest_and_holds_later_ones_until_the_erasure_finished(transactional_db, make_board):
    board = make_board()
    erased_us = now_micros()
    ErasedUser.objects.create(user_id="gone", erased_us=erased_us, requested_at="2026-01-01T00:00:00Z")

    changed = score_events_apply(
        events=[_event(board, "gone", 5, "old", erased_us), _event(board, "kept", 3, "k1", erased_us)]
    )
    # The erased event is dropped, and not handed off; its id is kept (a resend is a duplicate).
    assert [c.row.user_id for c in changed] == ["kept"]
    assert not Score.objects.filter(user_id="gone").exists()
    assert ProcessedEvent.objects.filter(user_id="gone", event_id="old").exists()

    # A later event waits while the erasure runs (nothing of the batch is applied) ...
    with pytest.raises(ErasureInProgress):
        score_events_apply(
            events=[_event(board, "gone", 7, "new", erased_us + 1), _event(board, "kept", 1, "k2", erased_us + 1)]
        )
    assert Score.objects.get(user_id="kept").score == 3
    # ... and counts once it has finished.
    ErasedUser.objects.filter(user_id="gone").update(finished_at="2026-01-01T00:00:01Z")
    score_events_apply(
        events=[_event(board, "gone", 7, "new", erased_us + 1), _event(board, "gone", 9, "old", erased_us + 1)]
    )
    assert Score.objects.get(user_id="gone").score == 7


def test_it_waits_for_transactions_older_than_the_erasure(transactional_db, make_board):
    board = make_board()
    Score.objects.create(user_id="x", leaderboard=board, period="all", score=1, sort_key=-1, reached_at=timezone.now())
    user_erasure_start(user_id="x")
    other = connection.copy()  # another session, as an ingest worker's
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1")  # a transaction that started before the task runs
            step = user_erase_step(user_id="x", cutoff=None, wait_seconds=0.3)
            assert step.outcome == "waiting" and step.cutoff is not None
            assert Score.objects.filter(user_id="x").exists()
            cursor.execute("COMMIT")
        # Sent again with the same cutoff: a transaction that started since is not waited for.
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1")
            step = user_erase_step(user_id="x", cutoff=step.cutoff, wait_seconds=0.3)
            cursor.execute("COMMIT")
        assert step.outcome == "grace"
        assert not Score.objects.filter(user_id="x").exists()
    finally:
        other.close()


@pytest.fixture
def write_key(db) -> str:
    from scores.models import ApiKey

    return ApiKey.generate(name="writer")[1]


def test_it_refuses_erasing_without_an_admin_key_or_with_a_bad_id(api, db, admin_key, write_key):
    response = api.delete("/api/v1/users/a")
    assert response.status_code == 401 and response.json()["detail"]
    response = bearer(api, write_key).delete("/api/v1/users/a")
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    response = bearer(api, admin_key).delete("/api/v1/users/a@b")
    assert response.status_code == 400 and "1-64" in response.json()["user_id"][0]
    response = bearer(api, admin_key).delete("/api/v1/users/a", {"why": "gdpr"}, format="json")
    assert response.status_code == 400 and "Unknown field" in response.json()["why"][0]
    response = bearer(api, admin_key).get("/api/v1/users/a")
    assert response.status_code == 405 and response.json()["detail"]
    assert not ErasedUser.objects.exists()


@pytest.mark.pipeline
def test_it_purges_finished_tombstones_past_the_retention_and_resends_unfinished_ones(worker, settings):
    from datetime import timedelta

    from rankings.erasure import erasures_resume
    from scores.maintenance import erased_users_purge

    long_ago = timezone.now() - timedelta(hours=settings.LEADERBOARD_EVENT_ID_RETENTION_HOURS + 1)
    ErasedUser.objects.create(user_id="old-done", erased_us=1, requested_at=long_ago, finished_at=long_ago)
    ErasedUser.objects.create(user_id="old-stuck", erased_us=1, requested_at=long_ago)
    ErasedUser.objects.create(
        user_id="recent-done", erased_us=1, requested_at=timezone.now(), finished_at=timezone.now()
    )
    assert erased_users_purge() == 1
    assert sorted(ErasedUser.objects.values_list("user_id", flat=True)) == ["old-stuck", "recent-done"]
    assert erasures_resume() == 1  # the stuck one's task is sent again
    # ... and a worker runs it to the end (left running, it would meet the next test's
    # database flush).
    eventually(lambda: erased_and_finished("old-stuck"), timeout=30)
