"""Liveness, readiness and the Prometheus scrape. Plain Django views: no auth classes,
no throttles, nothing that could make a probe fail for reasons of its own."""

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from leaderboard_project.metrics import metrics_text
from operations.health import readiness_check


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    readiness = readiness_check()
    body = {"ready": readiness.ready, "failed": readiness.failed, "checks": readiness.checks}
    return JsonResponse(body, status=200 if readiness.ready else 503)


@require_GET
def readyz_web(request: HttpRequest) -> JsonResponse:
    """A web process's readiness, for its load balancer (see operations.health)."""
    readiness = readiness_check()
    body = {
        "ready": readiness.web_ready,
        "failed": readiness.web_failed,
        "degraded": readiness.degraded,
        "checks": readiness.checks,
    }
    return JsonResponse(body, status=200 if readiness.web_ready else 503)


def _may_scrape(request: HttpRequest) -> bool:
    if settings.LEADERBOARD_METRICS_PUBLIC:
        return True
    token = settings.LEADERBOARD_METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    # Unknown to anyone without the token: a 404 does not even say there is something here.
    if not _may_scrape(request):
        raise Http404("Not found.")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
