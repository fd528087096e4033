"""The per-key request rate: a fixed window per key in Redis, leased to each process in chunks.

The window's count lives in Redis (one counter per key, expiring with the window), so every
web process shares one budget. A process does not ask Redis per request: it leases a chunk
of the window's budget (an INCRBY of the chunk), spends it from memory under a lock, and
leases again when it runs out. A process never spends more than Redis granted it, so the
limit holds exactly across processes; what a process leased but did not spend before the
window ended is lost, which makes the throttle at most ``processes x chunk`` requests
stricter per window (the chunk is 1 % of the limit, so under 1 request a window for the
small limits that tests and strict keys use: those lease one request at a time).

Redis away: the request passes (availability over strictness), as before.
"""

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.settings import api_settings

from rankings.cache import redis_client, run_script

logger = logging.getLogger(__name__)

SCOPE = "api_key"

# KEYS: the key's window counter. ARGV: window ms, chunk. Takes a chunk of the window's
# budget, starting the window (its expiry) when the counter is new. Returns the count
# after the take and the milliseconds left in the window.
_LEASE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""


def parse_rate(rate: str) -> tuple[int, int]:
    """ "100/minute" -> (100, 60), as DRF spells rates."""
    count, per = rate.split("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[per[0]]


# Two leases whose windows end this close together (seconds) are of the same window.
_SAME_WINDOW = 0.5


@dataclass
class _Lease:
    rate: str
    left: int
    ends_at: float  # time.monotonic() when the window ends
    # Redis granted less than a chunk: the window's budget is spent, refuse until it ends.
    last: bool


class KeyThrottle:
    def __init__(self) -> None:
        self._leases: dict[int, _Lease] = {}
        self._lock = threading.Lock()

    def wait_for(self, key_id: int) -> float | None:
        """None when the key may make one more request now (and counts it); otherwise the
        seconds until its window ends."""
        rate = api_settings.DEFAULT_THROTTLE_RATES[SCOPE]
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(key_id)
            if lease is not None and lease.rate == rate and now < lease.ends_at:
                if lease.left > 0:
                    lease.left -= 1
                    return None
                if lease.last:
                    return lease.ends_at - now
        return self._lease(key_id, rate, now)

    def _lease(self, key_id: int, rate: str, now: float) -> float | None:
        # Outside the lock: two threads that both run out lease twice, which only spends
        # one more chunk of the window early.
        limit, period = parse_rate(rate)
        chunk = max(1, min(limit // 100, 1000))
        key = f"{settings.LEADERBOARD_REDIS_PREFIX}:throttle:{key_id}"
        try:
            count, left_ms = run_script(redis_client(), _LEASE, [key], [period * 1000, chunk])
        except RedisError as exc:
            logger.warning("throttle not applied, Redis failed: %s", exc)
            return None
        granted = max(0, min(chunk, limit - (count - chunk)))
        ends_at = now + left_ms / 1000
        with self._lock:
            lease = self._leases.get(key_id)
            if lease is not None and lease.rate == rate and abs(lease.ends_at - ends_at) < _SAME_WINDOW:
                # Threads that ran out at once each leased: what they got adds up, none is lost.
                lease.left += max(granted - 1, 0)
                lease.last = lease.last or granted < chunk
            else:
                self._leases[key_id] = _Lease(rate, max(granted - 1, 0), ends_at, last=granted < chunk)
        return None if granted else max(left_ms, 1) / 1000

    def leased(self, key_id: int) -> bool:
        """Whether ``wait_for`` would answer from memory (a lease with budget left, or a
        window known to be spent), with no round trip to Redis."""
        lease = self._leases.get(key_id)
        return (
            lease is not None
            and lease.rate == api_settings.DEFAULT_THROTTLE_RATES[SCOPE]
            and time.monotonic() < lease.ends_at
            and (lease.left > 0 or lease.last)
        )

    def forget(self) -> None:
        with self._lock:
            self._leases.clear()


key_throttle = KeyThrottle()
