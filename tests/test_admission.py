"""Admission control on the real broker: past the backlog bound a score request answers 503
with Retry-After and enqueues nothing; once the workers drain the backlog it is 202 again."""

import time

import pytest

from scores.admission import backlog_monitor
from tests.checks import db_scores, eventually, queued_messages
from tests.conftest import Workers, bearer

pytestmark = pytest.mark.pipeline


def test_it_sheds_load_past_the_backlog_bound_and_enqueues_nothing(
    celery_workers: Workers, transactional_db, settings, api, admin_key, make_board
):
    settings.LEADERBOARD_RANKING_STRATEGY = "merge_tree"
    settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = 200
    celery_workers.stop()  # nobody applies: the backlog grows
    board = make_board()
    client = bearer(api, admin_key)
    url = f"/api/v1/leaderboards/{board.slug}/scores"
    accepted = 0
    shed = None
    deadline = time.monotonic() + 30
    while shed is None and time.monotonic() < deadline:
        events = [{"user_id": f"u{n}", "points": 1, "event_id": f"b{accepted}-{n}"} for n in range(50)]
        response = client.post(url, {"events": events}, format="json")
        if response.status_code == 202:
            accepted += 1
            time.sleep(0.05)  # let the monitor read the growing queues
        else:
            shed = response
    assert shed is not None, f"never shed (backlog {backlog_monitor.latest}, {accepted} accepted)"
    assert shed.status_code == 503 and shed.headers["Retry-After"] == "1", shed.content
    assert "events wait to be applied" in shed.json()["detail"]

    before = queued_messages()
    refused = client.post(url, {"user_id": "late", "points": 5, "event_id": "late-1"}, format="json")
    assert refused.status_code == 503
    assert queued_messages() == before, "a shed request enqueued something"

    celery_workers.ensure("merge_tree")
    eventually(lambda: _assert_equal(queued_messages(), 0))
    # (Messages left on the test queues by earlier tests may have filled the backlog first.)
    expected = {f"u{n}": accepted for n in range(50)} if accepted else {}
    eventually(lambda: _assert_equal(db_scores(board), expected))

    def admitted() -> None:
        response = client.post(url, {"user_id": "late", "points": 5, "event_id": "late-1"}, format="json")
        assert response.status_code == 202, response.content

    eventually(admitted, timeout=10)
    eventually(lambda: _assert_equal(db_scores(board), {**expected, "late": 5}))


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected
