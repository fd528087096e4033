"""Request checks that hold for every route, before any view or database sees the request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

NUL_DETAIL = "The path holds a NUL byte (%00)."


class RefuseNulBytes:
    """A NUL byte in the path is refused with a 400: PostgreSQL cannot
    hold one in text, so a lookup with it would fail as a server error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            if request.path_info.startswith("/api/"):
                return JsonResponse({"detail": NUL_DETAIL}, status=400)
            return HttpResponseBadRequest(NUL_DETAIL)
        return self.get_response(request)
