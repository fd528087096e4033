"""Pieces every API view shares: the JSON parser, the JSON 413 for oversized bodies and
the 503s for a broker or database outage."""

import codecs
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.utils.http import parse_header_parameters
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def is_utf8(charset: str | None) -> bool:
    """Whether a Content-Type's charset names UTF-8 (none given means UTF-8, as JSON is)."""
    if charset is None:
        return True
    try:
        return codecs.lookup(charset).name == "utf-8"
    except LookupError:
        return False


class JSONParser(parsers.JSONParser):
    """DRF's parser, with two bodies refused as a 400 that DRF would take or fail on.

    - Any charset but UTF-8. DRF decodes with whatever codec the Content-Type names, and
      Python's include ``zlib``, ``bz2`` and ``base64``: a small body would expand far
      past the body limit. JSON is UTF-8 (RFC 8259), so the decoded size stays the
      body's.
    - Nesting too deep for the recursive decoder: a body well under the size limit
      (``[[[[...`` 100k deep) makes ``json`` raise RecursionError, a 500 otherwise.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        charset = parse_header_parameters(media_type or "")[1].get("charset")
        if not is_utf8(charset):
            raise exceptions.ParseError(f"Unsupported charset {charset!r} in Content-Type: send UTF-8 JSON.")
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - the body is nested too deeply.") from exc


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; retry later."
    default_code = "service_unavailable"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    # Events published before the outage stay queued: a resend with event ids is safe.
    default_detail = "The queue is unavailable; retry later, with an event_id on each event."
    default_code = "service_unavailable"


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    # DRF reads JSON bodies through Django's request.body, which refuses one over
    # DATA_UPLOAD_MAX_MEMORY_SIZE with an exception Django would turn into an HTML 400.
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
    # A database restart is an outage, not a server bug: tell the client to come back.
    elif isinstance(exc, OperationalError | InterfaceError):
        exc = DatabaseUnavailable()
    return exception_handler(exc, context)
