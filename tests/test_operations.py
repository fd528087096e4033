"""Operations endpoints and the operator's view, on the real PostgreSQL, Redis and RabbitMQ:
/healthz, /readyz, /metrics, the admin's pipeline page, dead letters, admin actions."""

import json
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import reverse
from kombu import Connection, Exchange, Producer
from prometheus_client.parser import text_string_to_metric_families

from operations.broker import dead_letters_peek, dead_letters_requeue, dead_queue_name, ingest_queue_names, queue_stats
from operations.reconcile import reconcile_mark
from rankings import cache, redis_keys
from rankings.cache import redis_client
from rankings.models import TopN
from tests.checks import eventually, make_score
from tests.conftest import Workers


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text scrape (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def declare_queues() -> None:
    """The work queues with their dead-letter arguments, as a worker declares them."""
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in settings.CELERY_TASK_QUEUES:
            queue(channel).declare()


def purge_queues() -> None:
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in settings.CELERY_TASK_QUEUES:
            channel.queue_purge(queue.name)


@pytest.fixture
def no_workers(celery_workers: Workers) -> None:
    """Nothing consumes the test queues (a worker left by another test is stopped)."""
    celery_workers.stop()
    declare_queues()
    purge_queues()
    yield
    purge_queues()


# --- health -----------------------------------------------------------------------------


def test_it_answers_healthz_while_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_it_is_not_ready_without_an_ingest_consumer(client, db, no_workers):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok" and body["checks"]["broker"] == "ok"
    assert body["failed"] == [f"consumer:{name}" for name in ingest_queue_names()]
    assert set(body["checks"][f"consumer:{name}"] for name in ingest_queue_names()) == {"no consumer"}


def test_a_web_process_is_ready_but_degraded_without_an_ingest_consumer(client, db, no_workers):
    # It still accepts scores (they wait in the queues): it stays in the load balancer.
    response = client.get("/readyz/web")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["failed"] == []
    assert body["degraded"] == [f"consumer:{name}" for name in ingest_queue_names()]


def test_a_web_process_is_ready_but_degraded_while_redis_is_unreachable(client, db, no_workers, settings):
    # Reads fall back to the database and the throttle lets requests by: degraded, not down.
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    stack = client.get("/readyz")
    assert stack.status_code == 503 and "redis" in stack.json()["failed"]
    response = client.get("/readyz/web")  # the same reading, a second within the memo
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["failed"] == []
    assert body["checks"]["redis"] == "error: ConnectionError"
    assert body["degraded"][0] == "redis"


def test_nothing_is_ready_while_the_database_is_unreachable(client, db, no_workers):
    from django.db import connections

    # This process's connection, pointed at a port nothing listens on, then put back.
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    conn.settings_dict["PORT"] = "1"
    try:
        answers = [client.get("/readyz"), client.get("/readyz/web")]
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)
    assert [answer.status_code for answer in answers] == [503, 503]
    web = answers[1].json()
    assert web["ready"] is False and web["failed"] == ["database"]
    assert web["checks"]["database"] == "error: OperationalError"


def test_it_checks_readiness_at_most_once_a_second_per_process(client, db, no_workers, monkeypatch):
    from operations import health

    opened = []
    real = health.broker_connection

    def counted():
        opened.append(1)
        return real()

    monkeypatch.setattr(health, "broker_connection", counted)
    answers = {client.get("/readyz").status_code for _ in range(5)}
    assert answers == {503} and len(opened) == 1


@pytest.mark.pipeline
@pytest.mark.parametrize("strategy", ["merge_tree"])
def test_it_is_ready_with_a_worker_running(client, worker):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["ready"] is True and body["failed"] == []
    assert {f"consumer:{name}" for name in ingest_queue_names()} <= set(body["checks"])


# --- metrics ----------------------------------------------------------------------------


def test_it_hides_metrics_by_default(client, settings):
    settings.LEADERBOARD_METRICS_PUBLIC = False
    settings.LEADERBOARD_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_it_serves_metrics_to_the_token_only(client, settings, db):
    settings.LEADERBOARD_METRICS_PUBLIC = False
    settings.LEADERBOARD_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


def test_it_counts_errors_and_reports_queue_depths(client, settings, db, no_workers):
    settings.LEADERBOARD_METRICS_PUBLIC = True
    before = client.get("/metrics").content.decode()
    assert client.get("/api/v1/leaderboards/no-such-board/").status_code == 404
    assert client.post("/api/v1/leaderboards/", {}, content_type="application/json").status_code == 401
    after = client.get("/metrics").content.decode()
    for status in ("404", "401"):
        counted = sample(after, "leaderboard_http_errors_total", status=status)
        assert counted == sample(before, "leaderboard_http_errors_total", status=status) + 1
    assert sample(after, "leaderboard_broker_up") == 1
    for name in [*ingest_queue_names(), dead_queue_name()]:
        assert f'leaderboard_queue_messages{{queue="{name}"}} 0.0' in after
        assert f'leaderboard_queue_consumers{{queue="{name}"}} 0.0' in after


def test_it_counts_accepted_events_per_board(client, settings, make_board, admin_key, no_workers):
    settings.LEADERBOARD_METRICS_PUBLIC = True
    board = make_board(slug="counted")
    before = sample(client.get("/metrics").content.decode(), "leaderboard_events_accepted_total", board="counted")
    events = [{"user_id": f"u{n}", "points": 1} for n in range(7)]
    response = client.post(
        f"/api/v1/leaderboards/{board.slug}/scores",
        {"events": events},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {admin_key}",
    )
    assert response.status_code == 202
    after = sample(client.get("/metrics").content.decode(), "leaderboard_events_accepted_total", board="counted")
    assert after == before + 7


# --- dead letters -----------------------------------------------------------------------


def dead_letter_one(queue: str, body: dict) -> None:
    """Publish a task message to ``queue`` and reject it: RabbitMQ dead-letters it with a real x-death."""
    with Connection(settings.CELERY_BROKER_URL) as conn:
        producer = Producer(conn.channel(), exchange=Exchange(""))
        producer.publish(body, routing_key=queue, headers={"task": "tasks.ingest.apply_events"}, delivery_mode=2)
        channel = conn.channel()
        message = None
        for _ in range(50):
            message = channel.basic_get(queue=queue, no_ack=False)
            if message is not None:
                break
        assert message is not None
        channel.basic_reject(message.delivery_tag, requeue=False)


def depth(name: str) -> int:
    stats = queue_stats([name])[name]
    assert stats is not None
    return stats.messages


def test_it_peeks_and_requeues_dead_letters(no_workers):
    source = ingest_queue_names()[0]
    dead_letter_one(source, {"poison": 1})
    eventually(lambda: _assert_equal(depth(dead_queue_name()), 1), timeout=5)

    peeked = dead_letters_peek(limit=5)
    assert [(p.task, p.queue, p.reason) for p in peeked] == [("tasks.ingest.apply_events", source, "rejected")]
    assert '"poison": 1' in peeked[0].body
    eventually(lambda: _assert_equal(depth(dead_queue_name()), 1), timeout=5)  # a peek leaves it there

    assert dead_letters_requeue() == 1
    assert depth(dead_queue_name()) == 0
    assert depth(source) == 1
    with Connection(settings.CELERY_BROKER_URL) as conn:
        back = conn.channel().basic_get(queue=source, no_ack=True)
    # The dead-letter bookkeeping (x-death) is gone; a quorum queue adds its delivery count.
    headers = back.properties["application_headers"]
    assert headers["task"] == "tasks.ingest.apply_events" and "x-death" not in headers, headers
    assert back.properties["delivery_mode"] == 2
    body = back.body.decode() if isinstance(back.body, bytes) else back.body
    assert '"poison": 1' in body


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


# --- the admin's pipeline page and actions --------------------------------------------


def test_it_shows_the_pipeline_page(admin_client, no_workers):
    redis_client().delete(f"{settings.LEADERBOARD_REDIS_PREFIX}:ops:last-reconcile")
    dead_letter_one(ingest_queue_names()[1], {"poison": 2})
    eventually(lambda: _assert_equal(depth(dead_queue_name()), 1), timeout=5)

    response = admin_client.get(reverse("admin-pipeline"))
    assert response.status_code == 200
    page = response.content.decode()
    for name in [*ingest_queue_names(), dead_queue_name()]:
        assert f"<td>{name}</td>" in page
    assert "1 message(s)" in page
    assert "tasks.ingest.apply_events" in page and "&quot;poison&quot;: 2" in page
    assert "Last finished: never" in page
    assert "Requeue dead letters" in page

    reconcile_mark(redis_client(), datetime(2026, 11, 28, 12, 0, tzinfo=UTC), boards=3)
    page = admin_client.get(reverse("admin-pipeline")).content.decode()
    assert "Last finished: 2026-11-28T12:00:00+00:00 (3 boards)" in page


def test_it_requeues_dead_letters_from_the_pipeline_page(admin_client, no_workers):
    source = ingest_queue_names()[2]
    dead_letter_one(source, {"poison": 3})
    eventually(lambda: _assert_equal(depth(dead_queue_name()), 1), timeout=5)
    response = admin_client.post(reverse("admin-pipeline"), {"requeue": "1"}, follow=True)
    assert response.status_code == 200
    assert "Requeued 1 dead letter(s)" in response.content.decode()
    assert depth(dead_queue_name()) == 0 and depth(source) == 1


def test_it_refuses_requeue_to_staff_who_are_not_superusers(client, db, no_workers):
    staff = User.objects.create_user("operator", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin-pipeline")).status_code == 200
    assert client.post(reverse("admin-pipeline"), {"requeue": "1"}).status_code == 403


def test_it_sends_anonymous_visitors_of_the_pipeline_page_to_the_login(client, db):
    response = client.get(reverse("admin-pipeline"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_it_rebuilds_the_top_n_from_the_admin(admin_client, make_board):
    board = make_board(slug="rebuild-top")
    make_score(board, "alice", 30)
    make_score(board, "bob", 50)
    url = reverse("admin:rankings_leaderboard_changelist")
    response = admin_client.post(url, {"action": "rebuild_top_n", "_selected_action": [board.pk]}, follow=True)
    assert response.status_code == 200
    assert "Top-N of rebuild-top rebuilt: 2 entries." in response.content.decode()
    top = TopN.objects.get(leaderboard=board, period=board.current_period())
    assert [row[:2] for row in top.entries] == [["bob", 50], ["alice", 30]]
    cached = cache.top_read(redis_client(), board.id, board.current_period())
    assert [(e["user_id"], e["score"]) for e in map(json.loads, cached.entries)] == [("bob", 50), ("alice", 30)]


def test_it_rebuilds_the_rank_index_from_the_admin(admin_client, make_board):
    board = make_board(slug="rebuild-index")
    for n in range(5):
        make_score(board, f"p{n}", n * 10)
    period = board.current_period()
    cache.index_reset(redis_client(), board.id, period)
    assert not cache.index_is_ready(redis_client(), board.id, period)
    url = reverse("admin:rankings_leaderboard_changelist")
    response = admin_client.post(url, {"action": "rebuild_rank_index", "_selected_action": [board.pk]}, follow=True)
    assert "Rank index of rebuild-index rebuilt." in response.content.decode()
    assert cache.index_is_ready(redis_client(), board.id, period)
    assert cache.index_read_rank(redis_client(), board.id, period, "p3", 0) is not None
    assert redis_client().zcard(redis_keys.index_key(board.id, period)) == 5
