"""The HTTP floor: a bare WSGI app that reads the body, parses its JSON and answers 202.

Served by granian and by gunicorn (gthread) with the web tier's workers and threads and
loaded by the same wrk client as the service, it is what an HTTP request costs before
any framework or service work: the single-event figures are held against it.
"""

from collections.abc import Callable, Iterable
from typing import Any

import orjson

_BODY = b'{"accepted":1}'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    if body:
        # Parsed and dropped: the floor pays for the JSON as the service's view does.
        orjson.loads(body)
    start_response("202 Accepted", _HEADERS)
    return [_BODY]
