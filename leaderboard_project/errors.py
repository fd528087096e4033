"""The site's error views (urls.py's handler400/403/404/500): JSON under /api/, as the
contract promises for every answer there, and Django's own HTML pages everywhere else.

DRF words the errors of its own views. These views answer for what never reaches one: a
path no route matches, a request refused before routing (a Host header not in
ALLOWED_HOSTS), an exception raised outside a view's exception handler.
"""

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import is_valid_path
from django.views import defaults


def _is_api(request: HttpRequest) -> bool:
    return request.path_info == "/api" or request.path_info.startswith("/api/")


def _detail(status: int, detail: str) -> JsonResponse:
    # DRF's shape for an error that belongs to no field.
    return JsonResponse({"detail": detail}, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, TooManyFieldsSent):
        return _detail(400, f"Too many query fields: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}.")
    # The exception's text is for the log: DisallowedHost's advises on ALLOWED_HOSTS.
    return _detail(400, "Bad request.")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return _detail(403, "You do not have permission to perform this action.")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    detail = f"No API endpoint at {request.path}."
    # The API's routes do not redirect to their slashed path (see urls.py): say it here.
    path = request.path_info
    if not path.endswith("/") and is_valid_path(f"{path}/", getattr(request, "urlconf", None)):
        detail += f" Did you mean {request.path}/ ?"
    return _detail(404, detail)


def server_error(request: HttpRequest) -> HttpResponse:
    if not _is_api(request):
        return defaults.server_error(request)
    return _detail(500, "Server error; it has been logged.")
