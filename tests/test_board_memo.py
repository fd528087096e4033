"""A board deleted and made again under its slug reaches every process's board memo.

The web process below (bin/web, another process) holds the old board in its 30 s memo;
the test process deletes and re-creates the board. Events posted after the change must
land on the new board, not be accepted (202) for the old id and dropped by the worker.
"""

import time

import httpx
import pytest
from django.conf import settings

from rankings.models import Leaderboard
from rankings.services import leaderboard_create
from scores.models import ApiKey
from tests.checks import db_scores, eventually
from tests.web import web_server


def post_event(url: str, key: str, slug: str, user_id: str, points: int) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/leaderboards/{slug}/scores",
        json={"user_id": user_id, "points": points},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_sends_events_to_a_board_made_again_under_its_slug(worker, strategy):
    key = ApiKey.generate(name="writer", is_admin=True)[1]
    old = leaderboard_create(slug="phoenix", name="Old")
    with web_server() as url:
        assert post_event(url, key, "phoenix", "early", 5).status_code == 202
        eventually(lambda: _equal(db_scores(old), {"early": 5}), timeout=30)
        # The web process now remembers "phoenix" as the old board, for 30 s.
        assert httpx.get(f"{url}/api/v1/leaderboards/phoenix/").json()["name"] == "Old"

        Leaderboard.objects.filter(pk=old.pk).delete()
        new = leaderboard_create(slug="phoenix", name="New")
        time.sleep(settings.LEADERBOARD_BOARD_MEMO_CHECK_SECONDS + 0.5)

        assert post_event(url, key, "phoenix", "late", 7).status_code == 202
        eventually(lambda: _equal(db_scores(new), {"late": 7}), timeout=30)
        assert httpx.get(f"{url}/api/v1/leaderboards/phoenix/").json()["name"] == "New"


@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_hides_a_board_from_another_process_once_it_is_being_deleted(transactional_db, strategy):
    board = leaderboard_create(slug="fading", name="Fading")
    with web_server() as url:
        assert httpx.get(f"{url}/api/v1/leaderboards/fading/").status_code == 200
        board.deleting = True
        board.save(update_fields=["deleting"])  # as the admin's delete does
        time.sleep(settings.LEADERBOARD_BOARD_MEMO_CHECK_SECONDS + 0.5)
        assert httpx.get(f"{url}/api/v1/leaderboards/fading/").status_code == 404
        assert [b["slug"] for b in httpx.get(f"{url}/api/v1/leaderboards/").json()["results"]] == []
