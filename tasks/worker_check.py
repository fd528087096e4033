"""The start-up check of ingest workers: no ingest partition may be left without a consumer.

Events are routed to partitions by settings alone; a partition that nobody consumes
takes 202s for events that are never applied. Partitions may be split over several
ingest workers, so the rule is on the whole broker, not on one worker's -Q list:

    A worker that consumes at least one ingest queue waits, up to
    LEADERBOARD_INGEST_COVERAGE_WAIT_SECONDS, until every partition 0..P-1
    (P = LEADERBOARD_INGEST_PARTITIONS) has a consumer on the broker (its own or
    another worker's); otherwise it names the partitions nobody consumes and exits
    with status 78 (EX_CONFIG).
"""

import logging
import time

from kombu import Connection
from kombu.exceptions import OperationalError

from tasks.queues import ingest_partition_of, ingest_queue_name

logger = logging.getLogger(__name__)

EX_CONFIG = 78


def partitions_without_consumer(conn: Connection, prefix: str, partitions: int) -> list[int]:
    """Partitions whose queue has no consumer, or does not exist (passive declares)."""
    missing = []
    for partition in range(partitions):
        channel = conn.channel()
        try:
            found = channel.queue_declare(queue=ingest_queue_name(prefix, partition), passive=True)
            if found.consumer_count == 0:
                missing.append(partition)
        except Exception:  # noqa: BLE001 - amqp's NotFound closes the channel: the queue is absent
            missing.append(partition)
        finally:
            try:
                channel.close()
            except (OSError, OperationalError, AttributeError):
                pass
    return missing


def ingest_coverage_check(
    conn: Connection, *, prefix: str, partitions: int, consumed: list[str], wait_seconds: float
) -> list[int]:
    """[] when the worker is not an ingest worker or every partition is consumed; else
    the partitions still without a consumer after ``wait_seconds``."""
    own = {p for name in consumed if (p := ingest_partition_of(prefix, name)) is not None}
    if not own:
        return []
    deadline = time.monotonic() + wait_seconds
    while True:
        missing = partitions_without_consumer(conn, prefix, partitions)
        if not missing or time.monotonic() >= deadline:
            return missing
        logger.info("waiting for consumers of ingest partitions %s", missing)
        time.sleep(1.0)
