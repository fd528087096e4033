"""Request checks that hold for every route, before any view or database sees the request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

NUL_IN_PATH = "The path holds a NUL byte (%00)."
NUL_IN_QUERY = "The query string holds a NUL byte (%00)."


def _nul_in_query(request: HttpRequest) -> bool:
    # The raw query is cheap to look at: most requests carry no "%00" at all (NUL
    # itself is no valid URL character, and a client that sends one is refused too).
    raw = request.META.get("QUERY_STRING", "")
    if "%00" not in raw and "\x00" not in raw:
        return False
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())


class RefuseNulBytes:
    """A NUL byte in the path or the query is refused with a 400: PostgreSQL cannot hold
    one in text, so a lookup with it (a slug, a user id, a period, an admin search) would
    fail as a server error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return self._refuse(request, NUL_IN_PATH)
        if _nul_in_query(request):
            return self._refuse(request, NUL_IN_QUERY)
        return self.get_response(request)

    @staticmethod
    def _refuse(request: HttpRequest, detail: str) -> HttpResponse:
        if request.path_info.startswith("/api/"):
            return JsonResponse({"detail": detail}, status=400)
        return HttpResponseBadRequest(detail)


class ProbesFirst:
    """``GET /healthz``, ``/readyz`` and ``/readyz/web`` answer before any other middleware. A kubelet or
    a load balancer probes a pod by its address, which is in no ALLOWED_HOSTS (the host
    check would answer 400), over plain HTTP with no TLS proxy in front (production's
    HTTPS redirect would answer 301): a probe would fail on a healthy pod, or pass on a
    redirect. The probe views read nothing of the request, so skipping both is safe."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from operations.views import healthz, readyz, readyz_web  # they import apps: not at settings load

        self.get_response = get_response
        self._probes: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            "/healthz": healthz,
            "/readyz": readyz,
            "/readyz/web": readyz_web,
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self._probes.get(request.path_info)
        if probe is not None and request.method == "GET":
            return probe(request)
        return self.get_response(request)
