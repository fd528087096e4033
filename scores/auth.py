"""Bearer API keys: authentication, the admin-key permission and the per-key throttle."""

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from leaderboard_project.memo import MISSING, SharedVersionWatch, TtlMemo
from rankings.cache import redis_client
from scores.models import ApiKey, hash_api_key
from scores.throttle import key_throttle

logger = logging.getLogger(__name__)


def _api_keys_version_key() -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:api_keys:version"


def _api_keys_version_read() -> bytes | None:
    return redis_client().get(_api_keys_version_key())


def api_keys_changed() -> None:
    """A key was made, changed or deleted: every process drops its copies within
    LEADERBOARD_BOARD_MEMO_CHECK_SECONDS (this one at once), after the commit."""
    _keys_watch.forget()

    def bump() -> None:
        try:
            redis_client().incr(_api_keys_version_key())
        except RedisError as exc:
            logger.warning("API keys version not bumped (Redis: %s); other processes see it within 10 s", exc)

    transaction.on_commit(bump)


# Keys are looked up on every write, from a per-process copy: a revoked key stops working
# in every process within the version check's interval (1 s), and within the TTL (10 s)
# should the version be unreadable.
_keys = TtlMemo(ttl_seconds=10.0)
_keys_watch = SharedVersionWatch(
    _api_keys_version_read, [_keys], interval_seconds=settings.LEADERBOARD_BOARD_MEMO_CHECK_SECONDS
)


def api_key_cached(raw_key: str) -> Any:
    """The key from this process's copy, or MISSING when ``api_key_lookup`` would need a
    round trip (no copy, or the shared version is due to be read). No I/O."""
    if _keys_watch.due():
        return MISSING
    return _keys.get(hash_api_key(raw_key))


def api_key_lookup(raw_key: str) -> ApiKey | None:
    _keys_watch.check()
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


# The front door (scores.front_door) sets this in the ASGI scope, and
# leaderboard_project.asgi copies it into the WSGI environ, when the door already counted
# the request against its key's budget and handed it on to Django: not counted twice.
THROTTLE_TAKEN = "leaderboard.throttle_taken"


class ApiKeyRateThrottle(BaseThrottle):
    """Per-key request rate: a window per key in Redis, leased in chunks (scores.throttle).

    DRF's own SimpleRateThrottle stores every request's timestamp in one cache entry,
    read and rewritten on each request; a counter per window costs one round trip per
    chunk of requests instead, whatever the rate.
    """

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        if not isinstance(request.auth, ApiKey) or request.META.get(THROTTLE_TAKEN):
            return True
        self.wait_seconds = key_throttle.wait_for(request.auth.pk)
        return self.wait_seconds is None

    def wait(self) -> float | None:
        return self.wait_seconds
