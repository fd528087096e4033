"""The score endpoint's front door: ``POST …/scores`` answered before Django's request cycle.

A WSGI layer in front of Django (``leaderboard_project.wsgi``). For the common request, a
plain valid single event or batch from a known key that may write to a known board, the
whole work is a few tens of microseconds of Python and no round trip but the publish:

- the key and the board come from the per-process copies (``scores.auth``,
  ``rankings.selectors``: bounded staleness, dropped when their shared version moves);
- the per-key throttle spends a budget leased from Redis in chunks (``scores.throttle``);
- admission is read from the monitor's last reading in memory (``scores.admission``);
- msgspec decodes the body straight into the typed records (``scores.submission``);
- the 202 body is prebuilt.

Anything else (no or unknown key, unknown board, a key not allowed there, a body that is
not the plain valid shape, too large or of another type, a host Django would refuse, plain
HTTP where production redirects) goes on to Django and DRF unchanged, which word every
refusal as before: the body already read is handed on with the request, and a request
this layer already counted against its key's budget is marked so that DRF does not count
it again. The refusals this layer makes itself (429 throttled, 429/503 shed by admission,
503 broker) carry DRF's shape and wording.
"""

import io
import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.http.request import split_domain_port, validate_host

# DRF's views first: importing them resolves DEFAULT_PARSER_CLASSES, which names a class of
# leaderboard_project.api, itself importing DRF's views (Django's URL loading does the same).
from rest_framework import exceptions, views  # noqa: F401

from leaderboard_project.api import ServiceUnavailable
from leaderboard_project.metrics import events_accepted, http_response
from rankings.selectors import leaderboard_by_slug
from scores.auth import THROTTLE_TAKEN, api_key_lookup
from scores.services import BrokerUnavailable, Overloaded, score_events_submit
from scores.submission import submission_decode
from scores.throttle import key_throttle

_SCORES_PATH = re.compile(r"/api/v1/leaderboards/([^/]+)/scores")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# What Django's middleware adds to every answer of the API (SecurityMiddleware,
# XFrameOptionsMiddleware) and DRF's Vary; HSTS as SecurityMiddleware sends it.
_COMMON_HEADERS = [
    ("Content-Type", "application/json"),
    ("Vary", "Accept"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
]
_STATUS = {202: "202 Accepted", 429: "429 Too Many Requests", 503: "503 Service Unavailable"}


class Answer(NamedTuple):
    status: int
    body: bytes
    retry_after: str | None = None


def _json_detail(detail: str) -> bytes:
    # DRF renders {"detail": ...} with compact separators; the texts here are plain ASCII.
    return b'{"detail":"' + detail.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"}'


_ACCEPTED_ONE = b'{"accepted":1}'
_BROKER_DOWN = _json_detail(str(ServiceUnavailable.default_detail))


class ScoreFrontDoor:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._hosts: dict[str, bool] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            match = _SCORES_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if match is not None:
                try:
                    answer = self._submit(environ, match.group(1))
                except DatabaseError:
                    answer = None  # a key or board lookup failed: Django answers (503) as ever
                finally:
                    # As Django's request_finished does: a connection taken for a lookup
                    # goes back to the pool (bin/web), or is closed past its age.
                    close_old_connections()
                if answer is not None:
                    return self._respond(answer, start_response)
        return self.app(environ, start_response)

    def _respond(self, answer: Answer, start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [*_COMMON_HEADERS, ("Content-Length", str(len(answer.body)))]
        if answer.retry_after is not None:
            headers.append(("Retry-After", answer.retry_after))
        if settings.PRODUCTION and settings.SECURE_HSTS_SECONDS:
            headers.append(("Strict-Transport-Security", _hsts()))
        http_response(answer.status)
        start_response(_STATUS[answer.status], headers)
        return [answer.body]

    def _submit(self, environ: dict[str, Any], slug: str) -> Answer | None:
        """The answer, or None to hand the request on to Django (its body put back)."""
        if not self._plain_request(environ):
            return None
        key = _bearer_key(environ.get("HTTP_AUTHORIZATION", ""))
        if key is None:
            return None
        wait = key_throttle.wait_for(key.pk)
        if wait is not None:
            throttled = exceptions.Throttled(wait)
            return Answer(429, _json_detail(str(throttled.detail)), f"{throttled.wait:d}")
        environ[THROTTLE_TAKEN] = True
        body = _read_body(environ)
        board = leaderboard_by_slug(slug=slug)
        if body is None or board is None or not key.may_write(board):
            return None
        events = submission_decode(body, board)
        if events is None:
            return None
        try:
            accepted = score_events_submit(leaderboard=board, events=events, api_key_id=key.pk)
        except Overloaded as exc:
            return Answer(exc.status, _json_detail(exc.detail), "1")
        except BrokerUnavailable:
            return Answer(503, _BROKER_DOWN)
        events_accepted(board.slug, accepted)
        return Answer(202, _ACCEPTED_ONE if accepted == 1 else b'{"accepted":%d}' % accepted)

    def _plain_request(self, environ: dict[str, Any]) -> bool:
        """What Django's middleware and DRF's negotiation would let through unchanged."""
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return False
        accept = environ.get("HTTP_ACCEPT", "*/*")
        if "*/*" not in accept and "application/json" not in accept and "application/*" not in accept:
            return False
        if settings.PRODUCTION and settings.SECURE_SSL_REDIRECT and not _secure(environ):
            return False  # Django redirects it
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        allowed = self._hosts.get(host)
        if allowed is None:
            if len(self._hosts) > 1000:  # spoofed hosts must not grow it without bound
                self._hosts.clear()
            domain, _port = split_domain_port(host)
            allowed = self._hosts[host] = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
        return allowed


def _bearer_key(header: str) -> Any:
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw or " " in raw:
        return None
    return api_key_lookup(raw)


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The body when it has a length within the limit; it is put back for Django either way."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        return None
    if not 0 <= length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return None  # chunked, or too large: Django reads (and refuses) it
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _secure(environ: dict[str, Any]) -> bool:
    header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if header is not None:
        return environ.get(header[0]) == header[1]
    return environ.get("wsgi.url_scheme") == "https"


def _hsts() -> str:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value
