"""The broker queues, named in one place.

Kept free of Django imports: settings build ``CELERY_TASK_QUEUES`` from it.
"""

from enum import StrEnum

from kombu import Exchange, Queue


class QueueRole(StrEnum):
    INGEST = "ingest"
    RANK = "rank"
    MAINTENANCE = "maintenance"
    # Messages that can never be applied: rejected there, kept for an operator to read.
    DEAD = "dead"
    # Board roots waiting out their merge window: nobody consumes it; each message expires
    # after the window (its own TTL) and is dead-lettered onto the rank queue.
    ROOT_DELAY = "rank.delay"


def ingest_queue_name(prefix: str, partition: int) -> str:
    return f"{prefix}.{QueueRole.INGEST}.{partition}"


def role_queue_name(prefix: str, role: QueueRole) -> str:
    return f"{prefix}.{role}"


def all_queue_names(prefix: str, partitions: int) -> list[str]:
    ingest = [ingest_queue_name(prefix, n) for n in range(partitions)]
    return [*ingest, role_queue_name(prefix, QueueRole.RANK), role_queue_name(prefix, QueueRole.MAINTENANCE)]


def durable_queues(prefix: str, partitions: int, delivery_limit: int, max_messages: int) -> list[Queue]:
    """Every work queue dead-letters into ``<prefix>.dead``, so a poison message leaves
    its queue (instead of blocking it) without vanishing.

    The ingest queues are quorum queues with a delivery limit: a message that kills its
    worker every time (no exception to catch, just a redelivery) is dead-lettered after
    ``delivery_limit`` returns instead of looping for ever. The rank and maintenance
    queues stay classic.

    A board's root waits out its merge window in the delay queue (per-message TTL, then
    dead-lettered onto the rank queue) rather than as a Celery countdown: the wait is in
    the broker, durable, and holds no worker's prefetch slot (quorum queues make Celery
    use per-consumer prefetch, which an ETA task would hold until it is due)."""
    dead = role_queue_name(prefix, QueueRole.DEAD)
    dead_letter = {"x-dead-letter-exchange": dead, "x-dead-letter-routing-key": dead}
    # The second line behind admission control: a full ingest queue refuses (nacks) a
    # publish instead of growing until the broker's memory alarm blocks every publisher.
    quorum = {
        **dead_letter,
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-max-length": max_messages,
        "x-overflow": "reject-publish",
    }
    rank = role_queue_name(prefix, QueueRole.RANK)
    delay = role_queue_name(prefix, QueueRole.ROOT_DELAY)
    delayed = Queue(
        delay,
        Exchange(delay, type="direct"),
        routing_key=delay,
        durable=True,
        queue_arguments={"x-dead-letter-exchange": rank, "x-dead-letter-routing-key": rank},
    )
    # One direct exchange per queue, routing key = queue name: publishing names the queue.
    ingest = {ingest_queue_name(prefix, n) for n in range(partitions)}
    work = [
        Queue(
            name,
            Exchange(name, type="direct"),
            routing_key=name,
            durable=True,
            queue_arguments=quorum if name in ingest else dead_letter,
        )
        for name in all_queue_names(prefix, partitions)
    ]
    return [*work, delayed, Queue(dead, Exchange(dead, type="direct"), routing_key=dead, durable=True)]


# What each kind of worker consumes; ``bin/worker ROLE`` and ``manage.py worker_queues``
# derive the -Q list from here and LEADERBOARD_INGEST_PARTITIONS, never by hand.
WORKER_ROLES = ("ingest", "rank", "all")


def worker_queue_names(prefix: str, partitions: int, role: str) -> list[str]:
    every = all_queue_names(prefix, partitions)
    if role == "ingest":
        return every[:partitions]
    if role == "rank":
        return every[partitions:]
    if role == "all":
        return every
    raise ValueError(f"unknown worker role {role!r}; one of {', '.join(WORKER_ROLES)}")


def ingest_partition_of(prefix: str, queue_name: str) -> int | None:
    """The partition an ingest queue serves; None for any other queue."""
    head = f"{prefix}.{QueueRole.INGEST}."
    tail = queue_name.removeprefix(head)
    return int(tail) if tail != queue_name and tail.isdecimal() else None


# Task names, so the web process can publish without importing the task modules.
APPLY_EVENTS_TASK = "tasks.ingest.apply_events"
