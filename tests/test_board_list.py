"""GET /api/v1/leaderboards/ pages through the boards with a cursor, in slug order."""

import json

import pytest

from rankings.models import Leaderboard

LIST = "/api/v1/leaderboards/"


@pytest.fixture
def boards(db) -> list[str]:
    slugs = [f"board-{n:04d}" for n in range(250)]
    Leaderboard.objects.bulk_create(Leaderboard(slug=slug, name=slug) for slug in reversed(slugs))
    return slugs


def walk(api, url: str) -> tuple[list[str], int]:
    seen: list[str] = []
    pages = 0
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += [board["slug"] for board in body["results"]]
        pages += 1
        url = body["next"]
    return seen, pages


def test_it_pages_through_every_board_once_in_slug_order(api, boards):
    seen, pages = walk(api, LIST)
    assert seen == boards
    assert pages == 3  # 100 a page by default


def test_it_takes_a_page_size(api, boards):
    response = api.get(LIST, {"limit": 7})
    body = response.json()
    assert [b["slug"] for b in body["results"]] == boards[:7]
    assert body["previous"] is None
    seen, pages = walk(api, f"{LIST}?limit=60")
    assert (seen, pages) == (boards, 5)


def test_it_neither_skips_nor_repeats_a_board_created_between_pages(api, boards):
    first = api.get(LIST, {"limit": 100}).json()
    Leaderboard.objects.create(slug="board-0000a", name="early")  # before the cursor
    Leaderboard.objects.create(slug="board-0150a", name="later")  # after it
    rest, _ = walk(api, first["next"])
    assert [b["slug"] for b in first["results"]] + rest == sorted([*boards, "board-0150a"])


def test_it_goes_back_with_the_previous_link(api, boards):
    second = api.get(api.get(LIST).json()["next"]).json()
    back = api.get(second["previous"]).json()
    assert [b["slug"] for b in back["results"]] == boards[:100]


@pytest.mark.parametrize("limit", ["0", "1001", "-3", "abc", "1.5"])
def test_it_refuses_a_bad_page_size(api, db, limit):
    response = api.get(LIST, {"limit": limit})
    assert response.status_code == 400, response.content
    assert "limit" in response.json()


@pytest.mark.parametrize("cursor", ["garbage", "bz1hYmM="])
def test_it_refuses_a_bad_cursor(api, db, cursor):
    response = api.get(LIST, {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert "cursor" in response.json()


def test_it_publishes_the_page_in_the_schema(api):
    schema = json.loads(api.get("/api/schema/", {"format": "json"}).content)
    operation = schema["paths"][LIST]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"cursor", "limit"}
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][page]["properties"]) == {"next", "previous", "results"}
