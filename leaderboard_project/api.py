"""Pieces every API view shares: the JSON parser, the JSON 413 for oversized bodies and
the 503s for a broker or database outage."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, parsers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class JSONParser(parsers.JSONParser):
    """DRF's parser, with nesting too deep for the recursive decoder refused as a 400.

    A body well under the size limit (``[[[[...`` 100k deep) makes ``json`` raise
    RecursionError, which DRF does not catch: it would be a 500.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
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
