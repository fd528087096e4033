"""The score endpoint's front door: ``POST …/scores`` answered before Django's request cycle.

The web tier is an ASGI application (``leaderboard_project.asgi``, served by granian):
this door answers the common request on the event loop, and hands every other request to
Django's WSGI application, run in a pool of threads (a2wsgi). For the common request, a
plain valid single event or batch from a known key that may write to a known board, the
work is a few tens of microseconds of Python on the loop, no thread, and no round trip
but the publish, whose confirm the request awaits on the loop (``scores.publisher``):

- the key and the board come from the per-process copies (``scores.auth``,
  ``rankings.selectors``: bounded staleness, dropped when their shared version moves);
- the per-key throttle spends a budget leased from Redis in chunks (``scores.throttle``);
- admission is read from the monitor's last reading in memory (``scores.admission``);
- msgspec decodes the body straight into the typed records (``scores.submission``);
- the 202 body is prebuilt.

When any of those would need a round trip (a copy to refresh, a lease to take, the fair
share to consult under pressure), the same steps run in a thread instead, so that the
loop never waits on a store. Anything else (no or unknown key, unknown board, a key not
allowed there, a body that is not the plain valid shape, too large or of another type, a
host Django would refuse, plain HTTP where production redirects) goes on to Django and
DRF unchanged, which word every refusal as before: the body already read is handed on,
and a request this door already counted against its key's budget is marked so that DRF
does not count it again. The refusals this door makes itself (429 throttled, 429/503 shed
by admission, 503 broker) carry DRF's shape and wording.
"""

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from a2wsgi import WSGIMiddleware
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.http.request import split_domain_port, validate_host
from django.utils.http import parse_header_parameters

# DRF's views first: importing them resolves DEFAULT_PARSER_CLASSES, which names a class of
# leaderboard_project.api, itself importing DRF's views (Django's URL loading does the same).
from rest_framework import exceptions, views  # noqa: F401

from leaderboard_project.api import ServiceUnavailable, is_utf8
from leaderboard_project.memo import MISSING
from leaderboard_project.metrics import events_accepted, http_response
from rankings.models import Leaderboard
from rankings.selectors import leaderboard_by_slug, leaderboard_cached
from scores.admission import admission_in_memory, admission_sheds_everyone
from scores.auth import THROTTLE_TAKEN, api_key_cached, api_key_lookup
from scores.publisher import ingest_publisher
from scores.services import BrokerUnavailable, Overloaded, score_events_stamp
from scores.submission import submission_decode
from scores.throttle import key_throttle
from tasks.messages import ScoreEvent

# A slug with a NUL byte goes to Django, whose middleware refuses it.
_SCORES_PATH = re.compile(r"/api/v1/leaderboards/([^/\x00]+)/scores")

# What Django's middleware adds to every answer of the API (SecurityMiddleware,
# XFrameOptionsMiddleware) and DRF's Vary; HSTS as SecurityMiddleware sends it.
_COMMON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"vary", b"Accept"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class Answer(NamedTuple):
    status: int
    body: bytes
    retry_after: str | None = None


def _json_detail(detail: str) -> bytes:
    # DRF renders {"detail": ...} with compact separators; the texts here are plain ASCII.
    return b'{"detail":"' + detail.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"}'


_ACCEPTED_ONE = b'{"accepted":1}'
_BROKER_DOWN = _json_detail(str(ServiceUnavailable.default_detail))


class _Ready(NamedTuple):
    """A request admitted and stamped: its events wait only for their publish."""

    board: Leaderboard
    batch: list[ScoreEvent]


class ScoreFrontDoor:
    """ASGI: the door in front of Django's WSGI application (in a2wsgi's thread pool)."""

    def __init__(self, django: WSGIMiddleware, executor: ThreadPoolExecutor) -> None:
        self.django = django
        self.executor = executor
        self._hosts: dict[str, bool] = {}

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            # The publisher runs on this loop, where the door awaits its confirms.
            ingest_publisher().attach(asyncio.get_running_loop())
        elif scope["type"] == "http" and scope["method"] == "POST":
            match = _SCORES_PATH.fullmatch(scope["path"])
            if match is not None:
                ingress = _Ingress(scope)
                body = await _read_body(ingress, receive)
                answer = await self._submit(ingress, match.group(1), body)
                if answer is not None:
                    await _respond(answer, send)
                    return
                if ingress.throttle_taken:
                    scope[THROTTLE_TAKEN] = True
                if body is not None:
                    receive = _replay(body, receive)
        await self.django(scope, _coroutine_receive(receive), send)

    async def _submit(self, ingress: "_Ingress", slug: str, body: bytes | None) -> Answer | None:
        """The answer, or None to hand the request on to Django."""
        if body is None or not self._plain_request(ingress):
            return None
        raw_key = _bearer_raw(ingress.header("authorization"))
        if raw_key is None:
            return None
        if _quick(raw_key, slug):
            prepared = _prepare(ingress, slug, raw_key, body)
        else:
            loop = asyncio.get_running_loop()
            prepared = await loop.run_in_executor(self.executor, _prepare_in_thread, ingress, slug, raw_key, body)
        if not isinstance(prepared, _Ready):
            return prepared
        try:
            await ingest_publisher().publish_async(prepared.batch)
        except BrokerUnavailable:
            return Answer(503, _BROKER_DOWN)
        accepted = len(prepared.batch)
        events_accepted(prepared.board.slug, accepted)
        return Answer(202, _ACCEPTED_ONE if accepted == 1 else b'{"accepted":%d}' % accepted)

    def _plain_request(self, ingress: "_Ingress") -> bool:
        """What Django's middleware and DRF's negotiation would let through unchanged."""
        content_type = ingress.header("content-type")
        media_type, _, params = content_type.partition(";")
        if media_type.strip().lower() != "application/json":
            return False
        if params and not is_utf8(parse_header_parameters(content_type)[1].get("charset")):
            return False  # DRF's parser refuses it, naming the charset
        accept = ingress.header("accept") or "*/*"
        if "*/*" not in accept and "application/json" not in accept and "application/*" not in accept:
            return False
        if settings.PRODUCTION and settings.SECURE_SSL_REDIRECT and not ingress.secure():
            return False  # Django redirects it
        host = ingress.header("host")
        allowed = self._hosts.get(host)
        if allowed is None:
            if len(self._hosts) > 1000:  # spoofed hosts must not grow it without bound
                self._hosts.clear()
            domain, _port = split_domain_port(host)
            allowed = self._hosts[host] = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
        return allowed


class _Ingress:
    """The request's headers, read once from the ASGI scope, and what the door did."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        self.throttle_taken = False

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def secure(self) -> bool:
        header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        if header is not None:
            name = header[0].removeprefix("HTTP_").replace("_", "-").lower()
            return self.header(name) == header[1]
        return self.scope.get("scheme") == "https"


def _quick(raw_key: str, slug: str) -> bool:
    """Whether every step before the publish answers from memory (no round trip)."""
    key = api_key_cached(raw_key)
    if key is MISSING or key is None:
        return False
    return leaderboard_cached(slug=slug) and key_throttle.leased(key.pk) and admission_in_memory()


def _prepare(ingress: _Ingress, slug: str, raw_key: str, body: bytes) -> Answer | _Ready | None:
    """Authenticate, throttle, find the board, decode, admit and stamp: an answer (a
    refusal), the events ready to publish, or None for Django."""
    key = api_key_lookup(raw_key)
    if key is None:
        return None
    wait = key_throttle.wait_for(key.pk)
    if wait is not None:
        throttled = exceptions.Throttled(wait)
        return Answer(429, _json_detail(str(throttled.detail)), f"{throttled.wait:d}")
    ingress.throttle_taken = True
    board = leaderboard_by_slug(slug=slug)
    if board is None or not key.may_write(board):
        return None
    if admission_sheds_everyone():  # refused before the body is decoded
        refusal = Overloaded("overloaded")
        return Answer(refusal.status, _json_detail(refusal.detail), "1")
    events = submission_decode(body, board)
    if events is None:
        return None
    try:
        return _Ready(board, score_events_stamp(leaderboard=board, events=events, tenant=key.admission_tenant))
    except Overloaded as exc:
        return Answer(exc.status, _json_detail(exc.detail), "1")


def _prepare_in_thread(ingress: _Ingress, slug: str, raw_key: str, body: bytes) -> Answer | _Ready | None:
    try:
        return _prepare(ingress, slug, raw_key, body)
    except DatabaseError:
        return None  # a key or board lookup failed: Django answers (503) as ever
    finally:
        # As Django's request_finished does: a connection taken for a lookup goes back to
        # the pool (bin/web), or is closed past its age.
        close_old_connections()


async def _respond(answer: Answer, send: Callable) -> None:
    headers = [*_COMMON_HEADERS, (b"content-length", str(len(answer.body)).encode())]
    if answer.retry_after is not None:
        headers.append((b"retry-after", answer.retry_after.encode()))
    if settings.PRODUCTION and settings.SECURE_HSTS_SECONDS:
        headers.append((b"strict-transport-security", _hsts().encode()))
    http_response(answer.status)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _read_body(ingress: _Ingress, receive: Callable) -> bytes | None:
    """The body when it has a length within the limit (else None: Django reads, and
    refuses, a chunked or too large one)."""
    try:
        length = int(ingress.header("content-length") or -1)
    except ValueError:
        return None
    if not 0 <= length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return None
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionAbortedError("the client went away")  # http.disconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Callable) -> Callable:
    """``receive`` for Django: the body the door already read, then the client's own."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _coroutine_receive(receive: Callable) -> Callable:
    """``receive`` as a coroutine function: a2wsgi hands ``receive()`` to
    ``run_coroutine_threadsafe``, which takes coroutines only, and granian's ``receive``
    returns an awaitable of its own (a POST body to Django would fail with a TypeError)."""

    async def received() -> dict[str, Any]:
        return await receive()

    return received


def _bearer_raw(header: str) -> str | None:
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw or " " in raw:
        return None
    return raw


def _hsts() -> str:
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return value
