"""The REST API v1 on the real PostgreSQL, Redis and RabbitMQ, with no Celery worker running.

Nothing consumes the test queues here, so every accepted event stays queued and
``queued_messages()`` counts exactly what a request published. Every refused request is
checked for its status, for a body that names the problem and for changing nothing: no
new message, no score, no processed event id, no new leaderboard.
"""

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings as django_settings
from django_redis import get_redis_connection
from kombu import Connection

from leaderboard_project.celery import app as celery_app
from rankings.models import Leaderboard, TopN
from scores.models import ApiKey, ProcessedEvent, Score, hash_api_key
from scores.partitioning import partition_of
from tests.checks import broker_connections_renew, queued_messages
from tests.conftest import Workers, bearer

LIST = "/api/v1/leaderboards/"


def detail_url(slug: str) -> str:
    return f"/api/v1/leaderboards/{slug}/"


def scores_url(slug: str) -> str:
    return f"/api/v1/leaderboards/{slug}/scores"


def top_url(slug: str) -> str:
    return f"/api/v1/leaderboards/{slug}/top"


def user_url(slug: str, user_id: str) -> str:
    return f"/api/v1/leaderboards/{slug}/users/{user_id}"


def _declare_test_queues() -> None:
    # queued_messages() declares passively; make sure the durable queues exist first.
    with Connection(django_settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in celery_app.amqp.queues.values():
            queue(channel).declare()


@pytest.fixture(scope="module", autouse=True)
def _test_queues() -> Iterator[None]:
    _declare_test_queues()
    yield
    # What these tests queued refers to boards that were rolled back; leave no backlog.
    # On a connection of its own: the broker-restart test below leaves the pooled one dead
    # (nothing in this process publishes through Celery's pool any more to revive it).
    with celery_app.connection_for_write() as conn:
        celery_app.control.purge(connection=conn)


@pytest.fixture(autouse=True)
def _no_worker(celery_workers: Workers) -> None:
    """A worker left running by another module would consume what these tests count."""
    celery_workers.stop()


class Snapshot:
    """Everything a refused request must leave as it was."""

    def __init__(self) -> None:
        self.state = self.read()

    @staticmethod
    def read() -> dict[str, int]:
        return {
            "queued": queued_messages(),
            "scores": Score.objects.count(),
            "processed": ProcessedEvent.objects.count(),
            "boards": Leaderboard.objects.count(),
            "tops": TopN.objects.count(),
        }

    def assert_unchanged(self) -> None:
        assert self.read() == self.state


def assert_names(response, *words: str) -> None:
    """The body names the problem: each word is a key of the body or appears in it."""
    body = response.json()
    text = json.dumps(body)
    for word in words:
        assert word in body or word in text, f"{word!r} not named in {text}"


# --- happy paths ---------------------------------------------------------------------


def test_it_creates_a_leaderboard(api, admin_key):
    response = bearer(api, admin_key).post(
        LIST,
        {"slug": "speedrun", "name": "Speedrun", "order": "asc", "aggregation": "best", "top_n": 50},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("slug", "name", "order", "aggregation", "top_n", "min_points", "max_points")} == {
        "slug": "speedrun",
        "name": "Speedrun",
        "order": "asc",
        "aggregation": "best",
        "top_n": 50,
        "min_points": 0,
        "max_points": 10**12,
    }
    assert body["created_at"]
    board = Leaderboard.objects.get(slug="speedrun")
    assert (board.order, board.aggregation, board.top_n) == ("asc", "best", 50)
    assert TopN.objects.filter(leaderboard=board).exists()


def test_it_creates_a_leaderboard_with_the_defaults(api, admin_key):
    response = bearer(api, admin_key).post(LIST, {"slug": "plain", "name": "Plain"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["order"], body["aggregation"], body["top_n"], body["min_points"], body["max_points"]) == (
        "desc",
        "sum",
        100,
        0,
        10**12,
    )


def test_it_lists_leaderboards(api, make_board):
    make_board(slug="beta")
    make_board(slug="alpha")
    response = api.get(LIST)
    assert response.status_code == 200
    assert [b["slug"] for b in response.json()["results"]] == ["alpha", "beta"]


def test_it_shows_a_leaderboard(api, make_board):
    make_board(slug="golf", name="Golf", order="asc", top_n=7, min_points=-5, max_points=500)
    response = api.get(detail_url("golf"))
    assert response.status_code == 200
    body = response.json()
    assert (body["slug"], body["name"], body["order"], body["top_n"], body["min_points"], body["max_points"]) == (
        "golf",
        "Golf",
        "asc",
        7,
        -5,
        500,
    )


def test_it_serves_an_empty_top(api, make_board):
    board = make_board()
    response = api.get(top_url(board.slug))
    assert response.status_code == 200
    body = response.json()
    assert body["leaderboard"] == board.slug
    assert body["entries"] == []
    assert "as_of" in body


def test_it_accepts_one_event_and_queues_one_message(api, admin_key, make_board):
    board = make_board()
    before = queued_messages()
    response = bearer(api, admin_key).post(
        scores_url(board.slug), {"user_id": "alice", "points": 5, "event_id": "ev-1"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1}
    assert queued_messages() == before + 1
    # Accepted, not applied: no worker runs here.
    assert Score.objects.count() == 0


def test_it_accepts_a_batch_of_three(api, admin_key, make_board):
    board = make_board()
    before = queued_messages()
    events = [{"user_id": f"u{n}", "points": n, "event_id": f"e{n}"} for n in range(3)]
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 3}
    # One message for the request, however many ingest partitions its users fall in.
    partitions = {partition_of(e["user_id"], django_settings.LEADERBOARD_INGEST_PARTITIONS) for e in events}
    assert len(partitions) > 1
    assert queued_messages() == before + 1


def test_it_accepts_a_full_batch_of_1000(api, admin_key, make_board):
    board = make_board()
    events = [{"user_id": f"u{n}", "points": 1} for n in range(1000)]
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1000}


def test_it_accepts_points_at_the_bounds_of_the_board(api, admin_key, make_board):
    board = make_board(min_points=-10, max_points=10)
    events = [{"user_id": "a", "points": -10}, {"user_id": "b", "points": 10}]
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2}


def test_it_answers_404_for_a_user_without_a_score(api, make_board):
    board = make_board()
    response = api.get(user_url(board.slug, "nobody"))
    assert response.status_code == 404
    assert_names(response, "nobody")


def test_it_publishes_the_openapi_schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    expected = {
        ("/api/v1/leaderboards/", "post"),
        ("/api/v1/leaderboards/", "get"),
        ("/api/v1/leaderboards/{slug}/", "get"),
        ("/api/v1/leaderboards/{slug}/scores", "post"),
        ("/api/v1/leaderboards/{slug}/top", "get"),
        ("/api/v1/leaderboards/{slug}/users/{user_id}", "get"),
        # Moderation (DESIGN, Additions v3).
        ("/api/v1/leaderboards/{slug}/", "patch"),
        ("/api/v1/leaderboards/{slug}/", "delete"),
        ("/api/v1/leaderboards/{slug}/users/{user_id}", "delete"),
        ("/api/v1/leaderboards/{slug}/reset", "post"),
    }
    published = {(path, method) for path, ops in paths.items() for method in ops}
    assert expected <= published, expected - published


def test_it_publishes_the_schema_as_yaml_by_default(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    for path in ("/api/v1/leaderboards/:", "/api/v1/leaderboards/{slug}/scores:", "/users/{user_id}:"):
        assert path in text


# --- 400: bad events -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"user_id": "u" * 65, "points": 1}, "user_id"),
        ({"user_id": "bad user!", "points": 1}, "user_id"),
        ({"user_id": "tab\t", "points": 1}, "user_id"),
        ({"user_id": "", "points": 1}, "user_id"),
        ({"user_id": None, "points": 1}, "user_id"),
        ({"points": 1}, "user_id"),
        ({"user_id": "alice"}, "points"),
        ({"user_id": "alice", "points": "ten"}, "points"),
        ({"user_id": "alice", "points": 1.5}, "points"),
        ({"user_id": "alice", "points": None}, "points"),
        ({"user_id": "alice", "points": True}, "points"),
        ({"user_id": "alice", "points": False}, "points"),
        ({"user_id": "alice", "points": -1}, "points"),
        ({"user_id": "alice", "points": 101}, "points"),
        ({"user_id": "alice", "points": 2**63}, "points"),
        ({"user_id": "alice", "points": 1, "event_id": "bad id!"}, "event_id"),
        ({"user_id": "alice", "points": 1, "event_id": ""}, "event_id"),
        ({"user_id": "alice", "points": 1, "event_id": "e" * 65}, "event_id"),
        ({"user_id": "alice", "points": 1, "event_id": "~server-made"}, "event_id"),
    ],
)
def test_it_refuses_a_bad_event(api, admin_key, make_board, event, field):
    board = make_board(min_points=0, max_points=100)
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(scores_url(board.slug), event, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    snapshot.assert_unchanged()


# The contract takes points only as JSON integers: DRF's IntegerField alone would coerce
# "10", 1.0 and "1e1" to 10, and the fast path (real ints only) hands these to it.
NOT_JSON_INTEGERS = ["10", "1", "-1", " 5 ", "1e1", "10.0", 1.0, 10.0, -0.0, 1e3, True, False]


@pytest.mark.parametrize("points", NOT_JSON_INTEGERS, ids=repr)
def test_it_refuses_points_that_are_not_a_json_integer(api, admin_key, make_board, points):
    board = make_board(min_points=-100, max_points=100000)
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(scores_url(board.slug), {"user_id": "a", "points": points}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"points": ["A valid integer is required."]}
    snapshot.assert_unchanged()


# Ids are JSON strings: DRF's CharField alone would take 5 as "5" and 1.5 as "1.5".
NOT_JSON_STRINGS = [5, 0, 1.5, True, ["a"], {"a": 1}]


@pytest.mark.parametrize("field", ["user_id", "event_id"])
@pytest.mark.parametrize("value", NOT_JSON_STRINGS, ids=repr)
def test_it_refuses_ids_that_are_not_a_json_string(api, admin_key, make_board, field, value):
    board = make_board()
    snapshot = Snapshot()
    event = {"user_id": "a", "points": 1, field: value}
    for body, where in ((event, {}), ({"events": [{"user_id": "b", "points": 1}, event]}, "1")):
        response = bearer(api, admin_key).post(scores_url(board.slug), body, format="json")
        assert response.status_code == 400, response.content
        expected = {field: ["Not a valid string."]}
        assert response.json() == ({"events": {where: expected}} if where else expected)
    snapshot.assert_unchanged()


@pytest.mark.parametrize("points", NOT_JSON_INTEGERS, ids=repr)
def test_it_refuses_points_that_are_not_a_json_integer_inside_a_batch(api, admin_key, make_board, points):
    board = make_board(min_points=-100, max_points=100000)
    snapshot = Snapshot()
    events = [{"user_id": "a", "points": 1}, {"user_id": "b", "points": points}]
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"events": {"1": {"points": ["A valid integer is required."]}}}
    snapshot.assert_unchanged()


def test_it_refuses_points_outside_the_board_range_and_names_the_range(api, admin_key, make_board):
    board = make_board(min_points=-3, max_points=3)
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(scores_url(board.slug), {"user_id": "a", "points": 4}, format="json")
    assert response.status_code == 400
    assert_names(response, "points", "-3", "3")
    snapshot.assert_unchanged()


def test_it_refuses_a_whole_batch_with_one_bad_event(api, admin_key, make_board):
    board = make_board()
    snapshot = Snapshot()
    events = [{"user_id": "good", "points": 1}, {"user_id": "also-good", "points": 2}, {"user_id": "bad!", "points": 3}]
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()["events"]
    # DRF's shape for a nested list: the bad event's index, then its bad field.
    assert list(errors) == ["2"] and list(errors["2"]) == ["user_id"], errors
    snapshot.assert_unchanged()


@pytest.mark.parametrize("size", [0, 1001])
def test_it_refuses_a_batch_of_the_wrong_size(api, admin_key, make_board, size):
    board = make_board()
    snapshot = Snapshot()
    events = [{"user_id": f"u{n}", "points": 1} for n in range(size)]
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 400, response.content
    assert "events" in response.json()
    snapshot.assert_unchanged()


@pytest.mark.parametrize("extra", ["user_id", "points", "event_id"])
def test_it_refuses_events_beside_single_event_fields(api, admin_key, make_board, extra):
    board = make_board()
    snapshot = Snapshot()
    body = {"events": [{"user_id": "a", "points": 1}], extra: {"user_id": "b", "points": 2, "event_id": "x"}[extra]}
    response = bearer(api, admin_key).post(scores_url(board.slug), body, format="json")
    assert response.status_code == 400, response.content
    assert extra in response.json()
    snapshot.assert_unchanged()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"user_id": "a", "points": 1, "pointz": 2}, ["pointz"]),
        ({"user_id": "a", "points": 1, "event_id": "e1", "board": "x"}, ["board"]),
        ({"events": [{"user_id": "a", "points": 1}], "note": "x"}, ["note"]),
        (
            {"events": [{"user_id": "a", "points": 1}, {"user_id": "b", "points": 2, "eventid": "e"}]},
            ["events", "1", "eventid"],
        ),
    ],
)
def test_it_refuses_unknown_fields_and_names_them(api, admin_key, make_board, body, path):
    # A typo ("eventid") must not pass silently: the event would lose its exactly-once id.
    board = make_board()
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(scores_url(board.slug), body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    for name in path:
        assert name in errors, errors
        errors = errors[name]
    snapshot.assert_unchanged()


@pytest.mark.parametrize("events", ["not-a-list", {"user_id": "a", "points": 1}, [1], ["a"], None])
def test_it_refuses_events_that_are_not_a_list_of_objects(api, admin_key, make_board, events):
    board = make_board()
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(scores_url(board.slug), {"events": events}, format="json")
    assert response.status_code == 400, response.content
    assert "events" in response.json()
    snapshot.assert_unchanged()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[1, 2]", "Expected a dictionary"),
        ('"a string"', "Expected a dictionary"),
        ("42", "Expected a dictionary"),
        ("true", "Expected a dictionary"),
        ("null", "No data provided"),
    ],
)
def test_it_refuses_a_json_body_that_is_not_an_object(api, admin_key, make_board, body, message):
    board = make_board()
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic("POST", scores_url(board.slug), body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert_names(response, "non_field_errors", message)
    snapshot.assert_unchanged()


@pytest.mark.parametrize(
    "body",
    ['{"user_id": "a", "points": ', "{user_id: 'a'}", '{"user_id": "a", "points": NaN}', "\xff\xfe"],
)
def test_it_refuses_malformed_json(api, admin_key, make_board, body):
    board = make_board()
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic(
        "POST", scores_url(board.slug), body.encode("latin-1"), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert_names(response, "detail")
    assert "JSON" in response.json()["detail"] or "body" in response.json()["detail"]
    snapshot.assert_unchanged()


def test_it_refuses_an_empty_body_naming_the_required_fields(api, admin_key, make_board):
    board = make_board()
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic("POST", scores_url(board.slug), b"", content_type="application/json")
    assert response.status_code == 400, response.content
    assert {"user_id", "points"} <= set(response.json())
    snapshot.assert_unchanged()


def test_it_refuses_a_body_that_is_not_json(api, admin_key, make_board):
    board = make_board()
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic(
        "POST", scores_url(board.slug), "user_id=a&points=1", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415, response.content
    assert_names(response, "detail", "application/x-www-form-urlencoded")
    snapshot.assert_unchanged()


# --- 400: bad leaderboards ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"top_n": 0}, "top_n"),
        ({"top_n": 1001}, "top_n"),
        ({"top_n": "many"}, "top_n"),
        ({"min_points": 10, "max_points": 9}, "max_points"),
        ({"min_points": -(2**63) - 1}, "min_points"),
        ({"max_points": 2**63}, "max_points"),
        ({"order": "up"}, "order"),
        ({"aggregation": "avg"}, "aggregation"),
        ({"slug": "Bad Slug!"}, "slug"),
        ({"slug": "UPPER"}, "slug"),
        ({"slug": "-leading-dash"}, "slug"),
        ({"slug": "s" * 65}, "slug"),
        ({"slug": ""}, "slug"),
        ({"name": ""}, "name"),
    ],
)
def test_it_refuses_a_bad_leaderboard(api, admin_key, fields, field):
    snapshot = Snapshot()
    body = {"slug": "fine", "name": "Fine", **fields}
    response = bearer(api, admin_key).post(LIST, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    snapshot.assert_unchanged()
    assert not Leaderboard.objects.filter(slug=body["slug"]).exists()


@pytest.mark.parametrize("missing", ["slug", "name"])
def test_it_refuses_a_leaderboard_without_a_required_field(api, admin_key, missing):
    snapshot = Snapshot()
    body = {"slug": "fine", "name": "Fine"}
    del body[missing]
    response = bearer(api, admin_key).post(LIST, body, format="json")
    assert response.status_code == 400, response.content
    assert missing in response.json()
    snapshot.assert_unchanged()


def test_it_refuses_a_duplicate_slug(api, admin_key, make_board):
    board = make_board(slug="taken", name="Original", top_n=5)
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(LIST, {"slug": "taken", "name": "Copy", "top_n": 9}, format="json")
    assert response.status_code == 400, response.content
    assert "slug" in response.json()
    snapshot.assert_unchanged()
    board.refresh_from_db()
    assert (board.name, board.top_n) == ("Original", 5)


def test_it_refuses_a_leaderboard_body_that_is_not_an_object(api, admin_key):
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic("POST", LIST, "[]", content_type="application/json")
    assert response.status_code == 400, response.content
    assert_names(response, "non_field_errors")
    snapshot.assert_unchanged()


# --- 400: bad queries --------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "6", "-1", "abc", "1.5"])
def test_it_refuses_a_bad_limit(api, make_board, limit):
    board = make_board(top_n=5)
    response = api.get(top_url(board.slug), {"limit": limit})
    assert response.status_code == 400, response.content
    assert "limit" in response.json()


def test_it_accepts_a_limit_up_to_top_n(api, make_board):
    board = make_board(top_n=5)
    for limit in ("1", "5"):
        response = api.get(top_url(board.slug), {"limit": limit})
        assert response.status_code == 200, response.content


@pytest.mark.parametrize("around", ["-1", "51", "x", "2.5"])
def test_it_refuses_a_bad_around(api, make_board, around):
    board = make_board()
    response = api.get(user_url(board.slug, "alice"), {"around": around})
    assert response.status_code == 400, response.content
    assert "around" in response.json()


@pytest.mark.parametrize("user_id", ["bad!user", "u" * 65])
def test_it_refuses_a_bad_user_id_in_the_path(api, make_board, user_id):
    board = make_board()
    response = api.get(user_url(board.slug, user_id))
    assert response.status_code == 400, response.content
    assert "user_id" in response.json()


# --- 401 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, ["credentials"]),
        ("Bearer lbk_not-a-real-key", ["Unknown"]),
        ("Token {key}", ["Bearer"]),
        ("Basic {key}", ["Bearer"]),
        ("Bearer", ["Bearer"]),
        ("Bearer {key} extra", ["Bearer"]),
    ],
)
@pytest.mark.parametrize("target", ["scores", "create"])
def test_it_refuses_a_missing_or_unknown_key(api, admin_key, make_board, authorization, words, target):
    board = make_board()
    snapshot = Snapshot()
    if authorization is not None:
        api.credentials(HTTP_AUTHORIZATION=authorization.format(key=admin_key))
    if target == "scores":
        response = api.post(scores_url(board.slug), {"user_id": "a", "points": 1}, format="json")
    else:
        response = api.post(LIST, {"slug": "new-board", "name": "New"}, format="json")
    assert response.status_code == 401, response.content
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert_names(response, "detail", *words)
    snapshot.assert_unchanged()


def test_it_refuses_a_deactivated_key(api, make_board):
    board = make_board()
    key, raw = ApiKey.generate(name="old")
    key.is_active = False
    key.save()
    snapshot = Snapshot()
    response = bearer(api, raw).post(scores_url(board.slug), {"user_id": "a", "points": 1}, format="json")
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate")
    snapshot.assert_unchanged()


# --- 403 and key scopes ---------------------------------------------------------------------


def test_it_refuses_a_key_limited_to_another_board(api, make_board):
    board_a = make_board(slug="board-a")
    board_b = make_board(slug="board-b")
    _, raw = ApiKey.generate(name="a-only", leaderboard=board_a)
    snapshot = Snapshot()
    response = bearer(api, raw).post(scores_url(board_b.slug), {"user_id": "a", "points": 1}, format="json")
    assert response.status_code == 403, response.content
    assert_names(response, "detail", "board-b")
    snapshot.assert_unchanged()


def test_it_lets_a_key_limited_to_a_board_write_to_it(api, make_board):
    board_a = make_board(slug="board-a")
    _, raw = ApiKey.generate(name="a-only", leaderboard=board_a)
    before = queued_messages()
    response = bearer(api, raw).post(scores_url(board_a.slug), {"user_id": "a", "points": 1}, format="json")
    assert response.status_code == 202, response.content
    assert queued_messages() == before + 1


def test_it_lets_an_unlimited_write_key_write_to_any_board(api, make_board):
    boards = [make_board(), make_board()]
    _, raw = ApiKey.generate(name="writer")
    for board in boards:
        response = bearer(api, raw).post(scores_url(board.slug), {"user_id": "a", "points": 1}, format="json")
        assert response.status_code == 202, response.content


def test_it_lets_an_admin_key_write_to_every_board(api, make_board):
    board_a = make_board(slug="board-a")
    boards = [board_a, make_board(), make_board()]
    # Even an admin key that names one board is an admin key.
    _, raw = ApiKey.generate(name="boss", leaderboard=board_a, is_admin=True)
    before = queued_messages()
    for board in boards:
        response = bearer(api, raw).post(scores_url(board.slug), {"user_id": "a", "points": 1}, format="json")
        assert response.status_code == 202, response.content
    assert queued_messages() == before + 3


@pytest.mark.parametrize("limited", [False, True])
def test_it_refuses_a_non_admin_key_creating_a_board(api, make_board, limited):
    board = make_board()
    _, raw = ApiKey.generate(name="writer", leaderboard=board if limited else None)
    snapshot = Snapshot()
    response = bearer(api, raw).post(LIST, {"slug": "mine", "name": "Mine"}, format="json")
    assert response.status_code == 403, response.content
    assert_names(response, "detail", "admin")
    snapshot.assert_unchanged()
    assert not Leaderboard.objects.filter(slug="mine").exists()


# --- 404 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", detail_url("no-such-board")),
        ("get", top_url("no-such-board")),
        ("get", user_url("no-such-board", "alice")),
        ("post", scores_url("no-such-board")),
    ],
)
def test_it_answers_404_for_an_unknown_board(api, admin_key, method, url):
    snapshot = Snapshot()
    client = bearer(api, admin_key)
    if method == "post":
        response = client.post(url, {"user_id": "a", "points": 1}, format="json")
    else:
        response = client.get(url)
    assert response.status_code == 404, response.content
    assert_names(response, "detail", "no-such-board")
    snapshot.assert_unchanged()


# --- 413 ---------------------------------------------------------------------------------------


def _oversized_events() -> list[dict]:
    return [{"user_id": f"user-{n:04d}", "points": n, "event_id": f"event-{n:04d}"} for n in range(60)]


def test_it_refuses_a_body_over_the_size_limit_and_enqueues_nothing(api, admin_key, make_board, settings):
    """413, never a 5xx or a 202, and nothing queued."""
    board = make_board()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    events = _oversized_events()
    body = json.dumps({"events": events})
    assert len(body) > 2000
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic("POST", scores_url(board.slug), body, content_type="application/json")
    assert response.status_code == 413, response.content
    snapshot.assert_unchanged()

    # The same kind of body under the limit is accepted: the size is what was refused.
    small = json.dumps({"events": events[:10]})
    assert len(small) < 2000
    response = bearer(api, admin_key).generic("POST", scores_url(board.slug), small, content_type="application/json")
    assert response.status_code == 202, response.content


def test_it_answers_413_naming_the_limit_for_an_oversized_score_body(api, admin_key, make_board, settings):
    board = make_board()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    body = json.dumps({"events": _oversized_events()})
    snapshot = Snapshot()
    response = bearer(api, admin_key).generic("POST", scores_url(board.slug), body, content_type="application/json")
    assert response.status_code == 413, response.content
    assert_names(response, "detail", "2000")
    snapshot.assert_unchanged()


def test_it_answers_413_for_an_oversized_leaderboard_body(api, admin_key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    snapshot = Snapshot()
    response = bearer(api, admin_key).post(LIST, {"slug": "big", "name": "n" * 3000}, format="json")
    assert response.status_code == 413, response.content
    assert_names(response, "detail", "2000")
    snapshot.assert_unchanged()


# --- 429 ---------------------------------------------------------------------------------------


@pytest.fixture
def three_per_minute(settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "3/minute"}}


def _fresh_throttle(key: ApiKey) -> None:
    get_redis_connection("default").delete(f"{django_settings.LEADERBOARD_REDIS_PREFIX}:throttle:{key.pk}")


def test_it_throttles_a_key_past_its_rate(api, make_board, three_per_minute):
    board = make_board()
    key, raw = ApiKey.generate(name="chatty")
    _fresh_throttle(key)
    client = bearer(api, raw)
    for n in range(3):
        response = client.post(
            scores_url(board.slug), {"user_id": "a", "points": 1, "event_id": f"e{n}"}, format="json"
        )
        assert response.status_code == 202, response.content
    snapshot = Snapshot()
    response = client.post(scores_url(board.slug), {"user_id": "a", "points": 1, "event_id": "e3"}, format="json")
    assert response.status_code == 429, response.content
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and 0 < int(retry_after) <= 60
    assert_names(response, "detail", "throttled")
    snapshot.assert_unchanged()


def test_it_throttles_each_key_on_its_own(api, make_board, three_per_minute):
    board = make_board()
    first, first_raw = ApiKey.generate(name="first")
    second, second_raw = ApiKey.generate(name="second")
    _fresh_throttle(first)
    _fresh_throttle(second)
    event = {"user_id": "a", "points": 1}
    for _ in range(3):
        assert bearer(api, first_raw).post(scores_url(board.slug), event, format="json").status_code == 202
    assert bearer(api, first_raw).post(scores_url(board.slug), event, format="json").status_code == 429
    response = bearer(api, second_raw).post(scores_url(board.slug), {"user_id": "a", "points": 1}, format="json")
    assert response.status_code == 202, response.content


def test_it_throttles_leaderboard_creation_per_key(api, admin_key, three_per_minute):
    key = ApiKey.objects.get(key_hash=hash_api_key(admin_key))
    _fresh_throttle(key)
    client = bearer(api, admin_key)
    for n in range(3):
        assert client.post(LIST, {"slug": f"b{n}", "name": "B"}, format="json").status_code == 201
    snapshot = Snapshot()
    response = client.post(LIST, {"slug": "b3", "name": "B"}, format="json")
    assert response.status_code == 429
    assert response.headers.get("Retry-After")
    snapshot.assert_unchanged()


# --- 503 ---------------------------------------------------------------------------------------


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=180)


def _wait_for_broker(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with Connection(django_settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
                _declare_test_queues()
                broker_connections_renew()
                return
        except Exception:  # any failure means "not up yet"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.pipeline
def test_it_answers_503_while_the_broker_is_down_and_202_after(transactional_db, live_server, admin_key, make_board):
    board = make_board()
    event = {"user_id": "alice", "points": 5, "event_id": "survives-outage"}
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as client:
        # Warm the web process's producer pool, so the outage meets a live connection.
        warm = client.post(scores_url(board.slug), json={"user_id": "warm", "points": 1})
        assert warm.status_code == 202, warm.text
        before = queued_messages()
        _rabbitmqctl("stop_app")
        try:
            started = time.monotonic()
            down = client.post(scores_url(board.slug), json=event)
            took = time.monotonic() - started
        finally:
            _rabbitmqctl("start_app")
            _wait_for_broker()
        assert down.status_code == 503, down.text
        assert "retry" in down.json()["detail"].lower()
        assert took < 20, f"the 503 took {took:.1f} s"
        assert queued_messages() == before, "the refused request left a message"

        again = client.post(scores_url(board.slug), json=event)
        assert again.status_code == 202, again.text
        assert again.json() == {"accepted": 1}
        assert queued_messages() == before + 1


def test_it_builds_the_schema_once_and_serves_it_again(api, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    from leaderboard_project.schema_view import SchemaView

    builds = []
    real = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        builds.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    monkeypatch.setattr(SchemaView, "_built", {})
    first = api.get("/api/schema/", {"format": "json"})
    second = api.get("/api/schema/", {"format": "json"})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and len(builds) == 1
    assert api.get("/api/schema/").content.decode().startswith("openapi:")  # YAML from the same build
    assert len(builds) == 1


def _post_score_in(api, key: str, board, charset: str):
    body = json.dumps({"user_id": "ann", "points": 5}).encode()
    url = f"/api/v1/leaderboards/{board.slug}/scores"
    return bearer(api, key).post(url, data=body, content_type=f"application/json; charset={charset}")


@pytest.mark.parametrize("charset", ["zlib", "bz2", "base64", "rot13", "latin-1", "utf-16", "no-such-codec"])
def test_it_refuses_a_body_in_any_charset_but_utf8_naming_content_type(api, admin_key, make_board, charset):
    response = _post_score_in(api, admin_key, make_board(), charset)
    assert response.status_code == 400, response.content
    assert "Content-Type" in response.json()["detail"] and charset in response.json()["detail"]
    create = bearer(api, admin_key).post(
        "/api/v1/leaderboards/", data=b'{"slug": "x", "name": "X"}', content_type=f"application/json; charset={charset}"
    )
    assert create.status_code == 400 and "Content-Type" in create.json()["detail"]


@pytest.mark.parametrize("charset", ["utf-8", "UTF8"])
def test_it_takes_a_utf8_body_with_its_charset_named(api, admin_key, make_board, charset):
    response = _post_score_in(api, admin_key, make_board(), charset)
    assert response.status_code == 202, response.content
