"""Bearer API keys: authentication, the admin-key permission and the per-key throttle."""

import logging

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from leaderboard_project.memo import MISSING, TtlMemo
from scores.models import ApiKey, hash_api_key

logger = logging.getLogger(__name__)

# Keys are looked up on every write; a revoked key stops working within 10 seconds.
_keys = TtlMemo(ttl_seconds=10.0)


def api_key_lookup(raw_key: str) -> ApiKey | None:
    digest = hash_api_key(raw_key)
    key = _keys.get(digest)
    if key is MISSING:
        key = ApiKey.objects.filter(key_hash=digest, is_active=True).first()
        _keys.put(digest, key)  # unknown keys too: a flood of bad keys costs no queries
    return key


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``; ``request.auth`` is the ``ApiKey``."""

    def authenticate(self, request: Request) -> tuple[ApiKey, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != b"bearer" or len(header) != 2:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <key>'.")
        key = api_key_lookup(header[1].decode("latin-1"))
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return key, key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing or wrong.
        return 'Bearer realm="api"'


class HasApiKey(permissions.BasePermission):
    message = "An API key is required."

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, ApiKey)


class HasAdminKey(permissions.BasePermission):
    message = "This needs an admin API key."

    def has_permission(self, request: Request, view: object) -> bool:
        if not isinstance(request.auth, ApiKey):
            raise exceptions.NotAuthenticated()
        return request.auth.is_admin


# One atomic step: count the request in the key's window, starting the window (with its
# expiry) on its first request. Returns the count and the milliseconds left in the window.
_COUNT_REQUEST = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


def parse_rate(rate: str) -> tuple[int, int]:
    """ "100/minute" -> (100, 60), as DRF spells rates."""
    count, per = rate.split("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[per[0]]


class ApiKeyRateThrottle(BaseThrottle):
    """Per-key request rate: a counter per key and window in Redis.

    DRF's own SimpleRateThrottle stores every request's timestamp in one cache entry,
    read and rewritten on each request: at thousands of requests a minute that entry is
    the bottleneck. A counter costs one Redis round trip at any rate.
    """

    scope = "api_key"

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True
        limit, period = parse_rate(api_settings.DEFAULT_THROTTLE_RATES[self.scope])
        key = f"{settings.LEADERBOARD_REDIS_PREFIX}:throttle:{request.auth.pk}"
        try:
            client = get_redis_connection("default")
            count, left_ms = client.register_script(_COUNT_REQUEST)(keys=[key], args=[period * 1000], client=client)
        except RedisError as exc:
            # Availability over strictness: a Redis outage must not stop score intake.
            logger.warning("throttle not applied, Redis failed: %s", exc)
            return True
        if count <= limit:
            return True
        self.wait_seconds = max(left_ms, 1) / 1000
        return False

    def wait(self) -> float | None:
        return self.wait_seconds
