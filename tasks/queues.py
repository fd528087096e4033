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


def ingest_queue_name(prefix: str, partition: int) -> str:
    return f"{prefix}.{QueueRole.INGEST}.{partition}"


def role_queue_name(prefix: str, role: QueueRole) -> str:
    return f"{prefix}.{role}"


def all_queue_names(prefix: str, partitions: int) -> list[str]:
    ingest = [ingest_queue_name(prefix, n) for n in range(partitions)]
    return [*ingest, role_queue_name(prefix, QueueRole.RANK), role_queue_name(prefix, QueueRole.MAINTENANCE)]


def durable_queues(prefix: str, partitions: int) -> list[Queue]:
    """Every work queue dead-letters into ``<prefix>.dead``, so a poison message leaves
    its queue (instead of blocking it) without vanishing."""
    dead = role_queue_name(prefix, QueueRole.DEAD)
    dead_letter = {"x-dead-letter-exchange": dead, "x-dead-letter-routing-key": dead}
    # One direct exchange per queue, routing key = queue name: publishing names the queue.
    work = [
        Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True, queue_arguments=dead_letter)
        for name in all_queue_names(prefix, partitions)
    ]
    return [*work, Queue(dead, Exchange(dead, type="direct"), routing_key=dead, durable=True)]


# Task names, so the web process can publish without importing the task modules.
APPLY_EVENTS_TASK = "tasks.ingest.apply_events"
