"""Delivery guarantees on the real broker: a poison message is dead-lettered, not lost,
and does not block the messages behind it."""

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from leaderboard_project.celery import app as celery_app
from scores.partitioning import partition_of
from scores.services import BrokerUnavailable, now_micros, score_events_submit
from tasks.messages import WIRE_VERSION, ScoreEvent, ingest_batch_payload
from tasks.queues import APPLY_EVENTS_TASK, ingest_queue_name
from tests.checks import db_scores, dead_letters, eventually
from tests.poison import KILL_WORKER_TASK

pytestmark = pytest.mark.pipeline


def test_it_dead_letters_a_poison_message_and_goes_on(worker, make_board):
    board = make_board()
    queue = ingest_queue_name(
        settings.LEADERBOARD_QUEUE_PREFIX, partition_of("victim", settings.LEADERBOARD_INGEST_PARTITIONS)
    )
    before = dead_letters()
    # Points that are not a number can never be applied: a retry would only loop.
    poison = [WIRE_VERSION, [[board.id, "victim", "lots", "p1", now_micros()]]]
    celery_app.send_task(APPLY_EVENTS_TASK, args=[poison], queue=queue)
    good = ingest_batch_payload([ScoreEvent(board.id, "victim", 5, "ok1", now_micros())])
    celery_app.send_task(APPLY_EVENTS_TASK, args=[good], queue=queue)

    eventually(lambda: _assert_equal(db_scores(board), {"victim": 5}))
    eventually(lambda: _assert_equal(dead_letters(), before + 1))


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def test_it_dead_letters_a_message_that_kills_its_worker_every_time(worker, make_board):
    # No exception to catch: the pool process dies, the message returns to its quorum
    # queue, and after the delivery limit the queue dead-letters it instead of looping.
    board = make_board()
    queue = ingest_queue_name(
        settings.LEADERBOARD_QUEUE_PREFIX, partition_of("next", settings.LEADERBOARD_INGEST_PARTITIONS)
    )
    before = dead_letters()
    celery_app.send_task(KILL_WORKER_TASK, queue=queue)
    good = ingest_batch_payload([ScoreEvent(board.id, "next", 7, "after-poison", now_micros())])
    celery_app.send_task(APPLY_EVENTS_TASK, args=[good], queue=queue)
    eventually(lambda: _assert_equal(dead_letters(), before + 1), timeout=120)
    eventually(lambda: _assert_equal(db_scores(board), {"next": 7}))


def test_it_answers_503_when_a_full_ingest_queue_nacks_the_publish(transactional_db, make_board, settings):
    # A queue that holds one message and refuses the rest (x-overflow reject-publish): the
    # broker nacks, and the request that waited for the confirm gets a 503.
    settings.LEADERBOARD_QUEUE_PREFIX = "lbtest-nack"
    settings.LEADERBOARD_INGEST_PARTITIONS = 1
    name = ingest_queue_name("lbtest-nack", 0)
    queue = Queue(
        name,
        Exchange(name, type="direct"),
        routing_key=name,
        durable=True,
        queue_arguments={"x-queue-type": "quorum", "x-max-length": 1, "x-overflow": "reject-publish"},
    )
    celery_app.amqp.queues.add(queue)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue(conn.channel()).declare()
    board = make_board()
    outcomes = []
    try:
        for n in range(6):
            try:
                score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 1, "event_id": f"n{n}"}])
                outcomes.append(202)
            except BrokerUnavailable:
                outcomes.append(503)
    finally:
        celery_app.amqp.queues.pop(name, None)
        with Connection(settings.CELERY_BROKER_URL) as conn:
            conn.channel().queue_delete(name)
    assert outcomes[0] == 202 and 503 in outcomes, outcomes
