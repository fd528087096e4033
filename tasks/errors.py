"""Which failures are passing outages (retry the task) and which are for good (dead-letter)."""

from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Database, broker or Redis away or restarting, or Redis at its maxmemory: it runs with
# noeviction (it holds pipeline state that must not vanish), so it refuses writes until
# memory is freed or added, and a hand-off that met the refusal is replayed by the retry.
# Integrity and data errors are not here: retrying a message that breaks a constraint
# would only loop.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
    RedisOutOfMemoryError,
    ConnectionError,
    TimeoutError,
)
