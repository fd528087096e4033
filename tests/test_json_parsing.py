"""Hostile JSON bodies: nesting deep enough to exhaust a recursive parser is a 400, not a 5xx."""

import pytest

from rankings.models import Leaderboard
from tests.conftest import bearer

DEPTH = 100_000


def nested_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"events":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("body", [nested_array(DEPTH), nested_object(DEPTH // 5)], ids=["arrays", "objects"])
@pytest.mark.parametrize("endpoint", ["/api/v1/leaderboards/", "/api/v1/leaderboards/{slug}/scores"])
def test_it_refuses_a_deeply_nested_body(api, admin_key, make_board, django_settings_max_body, body, endpoint):
    board = make_board()
    assert len(body.encode()) < django_settings_max_body
    response = bearer(api, admin_key).generic(
        "POST", endpoint.format(slug=board.slug), body, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert "nested" in response.json()["detail"]
    assert list(Leaderboard.objects.values_list("slug", flat=True)) == [board.slug]


@pytest.fixture
def django_settings_max_body(settings) -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE
