"""Which ingest queue a user's events go to: a consistent hash of ``user_id``.

Jump consistent hash (Lamping and Veach, 2014): when the number of queues grows from P to
P+1, only 1/(P+1) of the users move, so most users keep their queue (and warm rows).
"""

import zlib

_MULTIPLIER = 2862933555777941757
_MASK = 2**64 - 1


def jump_hash(key: int, buckets: int) -> int:
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _MULTIPLIER + 1) & _MASK
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def partition_of(user_id: str, partitions: int) -> int:
    return jump_hash(zlib.crc32(user_id.encode()), partitions)
