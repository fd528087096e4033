"""Bad queries on the read endpoints: a JSON 400 naming the problem, or a JSON 404; never a
5xx. No worker runs here: nothing is applied, and nothing must be written by a read."""

import pytest
from django_redis import get_redis_connection

from leaderboard_project.celery import app as celery_app
from rankings import cache, redis_keys
from tasks.messages import Row
from tests.conftest import Workers


@pytest.fixture(autouse=True)
def _no_worker(celery_workers: Workers):
    """A worker left running by another module would answer the repair requests of cold reads."""
    celery_workers.stop()
    yield
    celery_app.control.purge()  # the repair requests of these reads are for rolled-back boards


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"start": 0}, "start", "greater than or equal to 1"),
        ({"start": "abc"}, "start", "valid integer"),
        ({"count": 0}, "count", "greater than or equal to 1"),
        ({"count": 1001}, "count", "less than or equal to 1000"),
        ({"start": 2**63}, "start", "less than or equal to"),
    ],
)
def test_it_refuses_a_bad_rank_range(api, make_board, query, field, words):
    board = make_board()
    response = api.get(f"/api/v1/leaderboards/{board.slug}/ranks", query)
    assert response.status_code == 400
    assert words in response.json()[field][0]


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (None, "required"),
        ("", "may not be blank"),
        ("a,b@d,c", "'b@d'"),
        ("a,,c", "''"),
        (",".join(f"u{n}" for n in range(101)), "at most 100 user ids; got 101"),
        ("x" * 6501, "no more than 6500 characters"),
    ],
)
def test_it_refuses_bad_user_ids(api, make_board, ids, words):
    board = make_board()
    response = api.get(f"/api/v1/leaderboards/{board.slug}/users", {} if ids is None else {"ids": ids})
    assert response.status_code == 400
    assert words in response.json()["ids"][0]


def test_it_reads_a_hundred_ids_and_counts_repeats_once(api, make_board):
    board = make_board()
    ids = ",".join([*(f"u{n}" for n in range(100)), "u0", "u1"])
    response = api.get(f"/api/v1/leaderboards/{board.slug}/users", {"ids": ids})
    assert response.status_code == 200
    assert response.json() == {"leaderboard": board.slug, "period": "all", "entries": []}


@pytest.mark.parametrize("tail", ["ranks", "users?ids=a", "top", "top?limit=1"])
def test_it_answers_json_404_for_an_unknown_board(api, db, tail):
    response = api.get(f"/api/v1/leaderboards/no-such-board/{tail}")
    assert response.status_code == 404
    assert "no-such-board" in response.json()["detail"]


@pytest.mark.parametrize(("limit", "words"), [("0", "greater than or equal to 1"), ("11", "top_n"), ("x", "valid")])
def test_it_refuses_a_bad_top_limit_as_json(api, make_board, limit, words):
    board = make_board(top_n=10)
    response = api.get(f"/api/v1/leaderboards/{board.slug}/top", {"limit": limit})
    assert response.status_code == 400
    assert words in response.json()["limit"][0]


def test_it_reads_a_cold_top_from_the_database_and_only_asks_for_a_repair(api, make_board):
    board = make_board(top_n=5)
    period = board.current_period()
    client = get_redis_connection("default")
    client.delete(redis_keys.repair_asked_key(board.id, period))
    response = api.get(f"/api/v1/leaderboards/{board.slug}/top")
    assert response.status_code == 200
    assert response.json()["entries"] == []
    # Nothing in Redis was written by the read but its request for a repair.
    assert not client.exists(redis_keys.top_key(board.id, period))
    assert client.exists(redis_keys.repair_asked_key(board.id, period))


def test_it_publishes_the_read_endpoints_in_the_schema(api):
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]
    ranks = paths["/api/v1/leaderboards/{slug}/ranks"]["get"]
    assert {p["name"] for p in ranks["parameters"]} >= {"slug", "start", "count"}
    users = paths["/api/v1/leaderboards/{slug}/users"]["get"]
    assert {p["name"] for p in users["parameters"]} >= {"slug", "ids"}
    top = paths["/api/v1/leaderboards/{slug}/top"]["get"]
    assert {"200", "304", "400", "404"} <= set(top["responses"])
    user = paths["/api/v1/leaderboards/{slug}/users/{user_id}"]["get"]
    schema_ref = user["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    components = api.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]
    assert "top_percent" in components[schema_ref.rsplit("/", 1)[1]]["properties"]


def test_it_replaces_a_top_n_copy_left_in_the_older_format_whatever_its_version(make_board):
    board = make_board()
    period = board.current_period()
    client = get_redis_connection("default")
    key = redis_keys.top_key(board.id, period)
    client.hset(key, mapping={"v": 99, "data": '{"as_of": null, "entries": []}'})
    # The older copy reads as cold (its version is under another name) ...
    assert cache.top_read(client, board.id, period) is None
    # ... and the next write replaces it whole, though its version is lower.
    assert cache.top_write(client, board.id, period, 1, 1_700_000_000_000_000, [Row("a", 5, 1, 1), Row("b", 3, 2, 1)])
    cached = cache.top_read(client, board.id, period, 1)
    assert cached[:3] == (1, 1_700_000_000_000_000, [b'{"rank":1,"user_id":"a","score":5}'])
    assert not client.hexists(key, "data")
    assert not cache.top_write(client, board.id, period, 1, 0, [])  # an equal version is not newer
