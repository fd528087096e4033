"""The web tier's publisher (scores.publisher) on the real RabbitMQ: coalescing, several
confirms in flight, and a refusal that promises nothing."""

import threading
import time

import pytest
from kombu import Connection

from leaderboard_project.celery import app as celery_app
from scores.publisher import BrokerUnavailable, IngestPublisher
from scores.services import now_micros
from tasks.consuming import _decode
from tasks.messages import ScoreEvent
from tasks.queues import durable_queues, ingest_queue_name


def take_all(broker_url: str, names: list[str]) -> list[list[ScoreEvent]]:
    """Every message on these queues (taken for good), as its events."""
    messages = []
    with Connection(broker_url) as conn:
        channel = conn.default_channel
        for name in names:
            while (message := channel.basic_get(queue=name, no_ack=True)) is not None:
                messages.append(_decode(message).events)
    return messages


@pytest.fixture
def ingest_queues(settings):
    """Ingest queues of a prefix of their own: the session's Celery worker consumes the
    test prefix's queues and would take the messages this test counts."""
    prefix = "lbtestpub"
    settings.LEADERBOARD_QUEUE_PREFIX = prefix
    queues = durable_queues(prefix, settings.LEADERBOARD_INGEST_PARTITIONS, 10, 10_000)
    names = [ingest_queue_name(prefix, n) for n in range(settings.LEADERBOARD_INGEST_PARTITIONS)]
    for queue in queues:
        if queue.name in names:
            celery_app.amqp.queues.add(queue)
    yield names
    with Connection(settings.CELERY_BROKER_URL) as conn:
        for name in names:
            celery_app.amqp.queues.pop(name, None)
            conn.default_channel.queue_delete(name)


def event(n: int) -> ScoreEvent:
    return ScoreEvent(1, f"user-{n}", 1, f"e-{n}", now_micros())


def test_it_coalesces_waiting_requests_with_several_confirms_in_flight(settings, ingest_queues):
    publisher = IngestPublisher(max_events=10, max_in_flight=4)
    # Hold the publisher's loop until all the requests wait, as a busy loop would.
    gate = threading.Event()
    publisher._ensure_thread().call_soon_threadsafe(gate.wait)
    requests, errors = 200, []

    def submit(n: int) -> None:
        try:
            publisher.publish([event(n)])
        except BrokerUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(requests)]
    for thread in threads:
        thread.start()
    while publisher._waiting_events < requests:
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join()
    assert errors == []
    messages = take_all(settings.CELERY_BROKER_URL, ingest_queues)
    # Every confirmed event is on a queue exactly once, in full messages of max_events,
    # and the first four went out before any confirm came back.
    assert sorted(e.event_id for m in messages for e in m) == sorted(f"e-{n}" for n in range(requests))
    assert [len(m) for m in messages] == [10] * 20
    assert publisher.publishes == 20
    assert publisher.in_flight_peak == 4


def test_it_refuses_what_the_broker_refuses_and_promises_nothing(settings):
    # A queue that holds one message and refuses (nacks) the next: the second publish
    # must fail, not answer as if it were stored.
    prefix = "lbtestnack"
    settings.LEADERBOARD_QUEUE_PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS = prefix, 1
    name = ingest_queue_name(prefix, 0)
    full = next(queue for queue in durable_queues(prefix, 1, 10, 1) if queue.name == name)
    celery_app.amqp.queues.add(full)
    publisher = IngestPublisher(max_events=10, max_in_flight=4)
    accepted, refused = [], []
    try:
        # The limit of a quorum queue is approximate: a publish or two past it may pass.
        for n in range(6):
            try:
                publisher.publish([event(n)])
                accepted.append(f"e-{n}")
            except BrokerUnavailable:
                refused.append(f"e-{n}")
        assert refused, "the full queue took every message"
        stored = [e.event_id for m in take_all(settings.CELERY_BROKER_URL, [name]) for e in m]
        assert stored == accepted
    finally:
        celery_app.amqp.queues.pop(name, None)
        with Connection(settings.CELERY_BROKER_URL) as conn:
            conn.default_channel.queue_delete(name)
