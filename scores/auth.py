"""Bearer API keys: authentication, the admin-key permission and the per-key throttle."""

import time

from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from scores.models import ApiKey, hash_api_key

# Keys are looked up on every write; a revoked key stops working within this many seconds.
_KEY_TTL_SECONDS = 10.0
_key_cache: dict[str, tuple[float, ApiKey | None]] = {}


def api_key_lookup(raw_key: str) -> ApiKey | None:
    digest = hash_api_key(raw_key)
    now = time.monotonic()
    hit = _key_cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    key = ApiKey.objects.filter(key_hash=digest, is_active=True).first()
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[digest] = (now + _KEY_TTL_SECONDS, key)
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


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per-key request rate, counted in Redis (the Django cache)."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
