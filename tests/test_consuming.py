"""Taking waiting messages into one ingest transaction, on the real broker: a transaction
that fails spends none of the taken messages' deliveries (tasks/consuming.py)."""

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue

from tasks.consuming import messages_take
from tasks.messages import ScoreEvent, ingest_batch_payload
from tasks.queues import APPLY_EVENTS_TASK

pytestmark = pytest.mark.pipeline

QUEUE = "lbtest-take-0"
DEAD = "lbtest-take-dead"
DELIVERY_LIMIT = 10


@pytest.fixture
def queues() -> Connection:
    dead = Queue(DEAD, Exchange(DEAD, type="direct"), routing_key=DEAD, durable=True)
    taken = Queue(
        QUEUE,
        Exchange(QUEUE, type="direct"),
        routing_key=QUEUE,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD,
            "x-dead-letter-routing-key": DEAD,
        },
    )
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        for queue in (taken, dead):
            queue(channel).declare()
            queue(channel).purge()
        yield conn
        for queue in (taken, dead):
            queue(channel).delete()


def _depth(conn: Connection, name: str) -> int:
    return conn.channel().queue_declare(name, passive=True).message_count


def test_it_gives_taken_messages_back_without_spending_deliveries(queues):
    payload = ingest_batch_payload([ScoreEvent(1, "innocent", 3, "e1", 1)])
    Producer(queues.channel()).publish(
        [[payload], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
        exchange="",
        routing_key=QUEUE,
        headers={"task": APPLY_EVENTS_TASK, "id": "t1", "retries": 0, "eta": None},
        serializer="json",
    )
    # More failed transactions in a row than the queue's delivery limit allows returns.
    for failure in range(DELIVERY_LIMIT + 1):
        taken = messages_take(QUEUE, max_messages=15, max_events=4000)
        assert taken.count == 1, f"failure {failure}: the message is gone"
        assert [e.user_id for e in taken.events] == ["innocent"]
        taken.give_back_all(delay_s=0)  # what the ingest task does when the transaction fails

    assert _depth(queues, DEAD) == 0
    taken = messages_take(QUEUE, max_messages=15, max_events=4000)
    assert taken.count == 1
    headers = taken.messages[0].message.headers
    assert headers["retries"] == DELIVERY_LIMIT + 1 and headers["eta"]  # a Celery retry, to the worker
    assert not taken.messages[0].message.delivery_info.get("redelivered")
    taken.ack()
    assert _depth(queues, QUEUE) == 0
