"""The score endpoint's front door (scores.front_door) in its real server (bin/web --app
scores: granian, ASGI), against Django's own answers to the same requests.

No Celery worker runs here: what a request published stays queued, so the queue depth
tells exactly what each request left behind. The front door's own answers carry no
``Allow`` header (DRF's views add one), which tells which layer answered.
"""

import json
import time
import uuid
import zlib
from collections.abc import Iterator

import httpx
import pytest
from django.conf import settings
from django_redis import get_redis_connection
from kombu import Connection

from rankings.models import Leaderboard
from rankings.services import leaderboard_create
from scores.models import ApiKey
from tasks.consuming import _decode
from tasks.queues import all_queue_names, durable_queues
from tests.web import web_server

pytestmark = pytest.mark.pipeline


# Queues of the door's own: the session's Celery worker, once a pipeline test started it,
# consumes the test prefix's queues and would take what these tests count.
PREFIX = "lbtestdoor"


def door_queues() -> list[str]:
    partitions = settings.LEADERBOARD_INGEST_PARTITIONS
    queues = durable_queues(
        PREFIX, partitions, settings.LEADERBOARD_INGEST_DELIVERY_LIMIT, settings.LEADERBOARD_INGEST_QUEUE_MAX_MESSAGES
    )
    names = set(all_queue_names(PREFIX, partitions)[:partitions])
    with Connection(settings.CELERY_BROKER_URL) as conn:
        for queue in queues:
            if queue.name in names:
                queue(conn.default_channel).declare()  # as the server declares them
    return sorted(names)


@pytest.fixture(scope="module")
def door(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    names = door_queues()
    with web_server("scores", LEADERBOARD_QUEUE_PREFIX=PREFIX) as url:
        yield url
    with Connection(settings.CELERY_BROKER_URL) as conn:
        for name in names:
            conn.default_channel.queue_delete(name)


def scores_url(slug: str) -> str:
    return f"/api/v1/leaderboards/{slug}/scores"


def fresh_board(**fields: object) -> Leaderboard:
    # A fresh slug per test: the server keeps boards by slug for up to a second.
    return leaderboard_create(slug=f"door-{uuid.uuid4().hex[:10]}", name="Door", **fields)


def queued_events() -> list:
    """Take every message on the door's ingest queues (acknowledged: gone), as its events."""
    events = []
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.default_channel
        for name in door_queues():
            while (message := channel.basic_get(queue=name, no_ack=True)) is not None:
                events += _decode(message).events
    return events


def test_it_accepts_plain_events_at_the_door_and_queues_each_once(door, transactional_db, admin_key):
    board = fresh_board()
    slug, board_id = board.slug, board.id
    queued_events()
    headers = {"Authorization": f"Bearer {admin_key}"}
    before = time.time_ns() // 1000
    single = httpx.post(f"{door}{scores_url(slug)}", json={"user_id": "ann", "points": 7}, headers=headers)
    batch = httpx.post(
        f"{door}{scores_url(slug)}",
        json={"events": [{"user_id": "bob", "points": 3, "event_id": "b-1"}, {"user_id": "cy", "points": 0}]},
        headers=headers,
    )
    after = time.time_ns() // 1000
    assert (single.status_code, single.json()) == (202, {"accepted": 1})
    assert (batch.status_code, batch.json()) == (202, {"accepted": 2})
    assert "allow" not in single.headers and "allow" not in batch.headers, "Django answered, not the door"
    assert single.headers["content-type"] == "application/json"
    events = sorted(queued_events(), key=lambda event: event.user_id)
    assert [(e.leaderboard_id, e.user_id, e.points) for e in events] == [
        (board_id, "ann", 7),
        (board_id, "bob", 3),
        (board_id, "cy", 0),
    ]
    assert events[1].event_id == "b-1"
    # Server-made ids: outside the client alphabet, never repeated.
    assert events[0].event_id.startswith("~") and events[2].event_id.startswith("~")
    assert events[0].event_id != events[2].event_id
    assert all(before <= e.accepted_us <= after for e in events)
    assert all(e.display_name is None and e.metadata is None for e in events)


def test_it_queues_display_names_and_metadata_at_the_door(door, transactional_db, admin_key):
    slug = fresh_board().slug
    queued_events()
    headers = {"Authorization": f"Bearer {admin_key}"}
    event = {"user_id": "ann", "points": 7, "display_name": "Ann Zoë ✓", "metadata": {"lvl": 3, "tags": ["a"]}}
    answer = httpx.post(f"{door}{scores_url(slug)}", json=event, headers=headers)
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1})
    assert "allow" not in answer.headers, "Django answered, not the door"
    (queued,) = queued_events()
    assert (queued.display_name, json.loads(queued.metadata)) == ("Ann Zoë ✓", {"lvl": 3, "tags": ["a"]})


def _refusal_cases(admin_key: str, limited_key: str) -> list[tuple[str, dict, bytes]]:
    ok = json.dumps({"user_id": "ann", "points": 1}).encode()
    json_type = {"Content-Type": "application/json"}
    admin = {**json_type, "Authorization": f"Bearer {admin_key}"}
    return [
        ("no key", json_type, ok),
        ("unknown key", {**json_type, "Authorization": "Bearer lbk_nope"}, ok),
        ("other scheme", {**json_type, "Authorization": f"Basic {admin_key}"}, ok),
        ("unknown board", admin, ok),
        ("key of another board", {**json_type, "Authorization": f"Bearer {limited_key}"}, ok),
        ("not JSON", admin, b'{"user_id": "ann", '),
        ("points as a string", admin, b'{"user_id": "ann", "points": "10"}'),
        ("points as a float", admin, b'{"user_id": "ann", "points": 1.0}'),
        ("points as a boolean", admin, b'{"user_id": "ann", "points": true}'),
        ("points out of range", admin, b'{"user_id": "ann", "points": -1}'),
        ("unknown field", admin, b'{"user_id": "ann", "points": 1, "eventid": "e"}'),
        ("null event id", admin, b'{"user_id": "ann", "points": 1, "event_id": null}'),
        ("bad user id", admin, b'{"user_id": "a b", "points": 1}'),
        ("user id as a number", admin, b'{"user_id": 5, "points": 1}'),
        ("event id as a number", admin, b'{"user_id": "ann", "points": 1, "event_id": 9}'),
        ("empty display name", admin, b'{"user_id": "ann", "points": 1, "display_name": ""}'),
        (
            "display name too long",
            admin,
            json.dumps({"user_id": "ann", "points": 1, "display_name": "n" * 65}).encode(),
        ),
        ("control character in a display name", admin, b'{"user_id": "ann", "points": 1, "display_name": "a\\u0007b"}'),
        ("null display name", admin, b'{"user_id": "ann", "points": 1, "display_name": null}'),
        ("display name as a number", admin, b'{"user_id": "ann", "points": 1, "display_name": 7}'),
        ("lone surrogate in a display name", admin, b'{"user_id": "ann", "points": 1, "display_name": "\\ud800"}'),
        ("metadata not an object", admin, b'{"user_id": "ann", "points": 1, "metadata": [1]}'),
        (
            "metadata of 17 keys",
            admin,
            json.dumps({"user_id": "a", "points": 1, "metadata": dict.fromkeys("abcdefghijklmnopq", 1)}).encode(),
        ),
        (
            "metadata over 1024 bytes",
            admin,
            json.dumps({"user_id": "a", "points": 1, "metadata": {"k": "v" * 1020}}).encode(),
        ),
        ("metadata with an infinite number", admin, b'{"user_id": "ann", "points": 1, "metadata": {"a": 1e400}}'),
        ("lone surrogate in metadata", admin, b'{"user_id": "ann", "points": 1, "metadata": {"\\ud800": 1}}'),
        (
            "bad display name in a batch",
            admin,
            b'{"events": [{"user_id": "a", "points": 1}, {"user_id": "b", "points": 1, "display_name": ""}]}',
        ),
        ("empty batch", admin, b'{"events": []}'),
        ("batch too long", admin, json.dumps({"events": [{"user_id": "u", "points": 1}] * 1001}).encode()),
        ("form body", {"Content-Type": "application/x-www-form-urlencoded", **admin}, b"user_id=ann&points=1"),
        # A codec that expands the body past its limit (zlib here) or any other than UTF-8.
        ("zlib charset", {**admin, "Content-Type": "application/json; charset=zlib"}, zlib.compress(ok)),
        ("latin-1 charset", {**admin, "Content-Type": "application/json; charset=latin-1"}, ok),
        ("NUL in the slug", admin, ok),
        ("body too large", admin, b'{"events": [' + b'{"user_id": "u", "points": 1},' * 12_000 + b"]}"),
    ]


def test_it_words_every_refusal_as_django_does_and_queues_nothing(door, transactional_db, admin_key, api):
    slug = fresh_board().slug
    limited_key = ApiKey.generate(name="other", leaderboard=fresh_board())[1]
    queued_events()
    for name, headers, body in _refusal_cases(admin_key, limited_key):
        url = scores_url({"unknown board": "no-such-board", "NUL in the slug": "%00"}.get(name, slug))
        served = httpx.post(f"{door}{url}", content=body, headers=headers)
        django_headers = {"HTTP_AUTHORIZATION": headers["Authorization"]} if "Authorization" in headers else {}
        direct = api.post(url, data=body, content_type=headers["Content-Type"], **django_headers)
        assert 400 <= served.status_code < 500, (name, served.status_code, served.text)
        assert (served.status_code, served.json()) == (direct.status_code, direct.json()), name
        assert served.headers["content-type"] == "application/json", name
    assert queued_events() == []


def test_it_throttles_at_the_door_and_counts_each_request_once(transactional_db):
    slug = fresh_board().slug
    key, admin_key = ApiKey.generate(name="throttled", is_admin=True)
    # Key ids repeat from one test database to the next; their windows in Redis must not.
    get_redis_connection("default").delete(f"{settings.LEADERBOARD_REDIS_PREFIX}:throttle:{key.pk}")
    with web_server("scores", LEADERBOARD_THROTTLE_KEY_RATE="3/minute", LEADERBOARD_QUEUE_PREFIX=PREFIX) as url:
        headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}

        def post(body: bytes) -> httpx.Response:
            return httpx.post(f"{url}{scores_url(slug)}", content=body, headers=headers)

        first = post(b'{"user_id": "ann", "points": 1}')
        # Counted at the door, then handed to Django for its 400: counted once, not twice.
        refused = post(b'{"user_id": "ann"}')
        third = post(b'{"user_id": "ann", "points": 1}')
        throttled = post(b'{"user_id": "ann", "points": 1}')
    assert [first.status_code, refused.status_code, third.status_code] == [202, 400, 202]
    assert throttled.status_code == 429, throttled.text
    assert "allow" not in throttled.headers, "the door refused it, not Django"
    assert throttled.json()["detail"].startswith("Request was throttled. Expected available in ")
    assert 0 < int(throttled.headers["retry-after"]) <= 60


def test_it_stops_a_revoked_key_within_seconds(door, transactional_db):
    slug = fresh_board().slug
    key, raw = ApiKey.generate(name="soon-revoked")
    headers = {"Authorization": f"Bearer {raw}"}
    event = {"user_id": "ann", "points": 1}
    assert httpx.post(f"{door}{scores_url(slug)}", json=event, headers=headers).status_code == 202
    key.is_active = False
    key.save()
    revoked_at = time.monotonic()
    while (response := httpx.post(f"{door}{scores_url(slug)}", json=event, headers=headers)).status_code == 202:
        assert time.monotonic() - revoked_at < 5, "the revoked key still writes after 5 s"
        time.sleep(0.1)
    assert response.status_code == 401, response.text
    assert time.monotonic() - revoked_at < 3


def test_it_hands_every_other_request_to_django_with_its_body(door, transactional_db, admin_key):
    headers = {"Authorization": f"Bearer {admin_key}"}
    slug = f"door-{uuid.uuid4().hex[:10]}"
    created = httpx.post(f"{door}/api/v1/leaderboards/", json={"slug": slug, "name": "Via Django"}, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["slug"] == slug
    read = httpx.get(f"{door}/api/v1/leaderboards/{slug}/")
    assert (read.status_code, read.json()["name"]) == (200, "Via Django")
