"""The admin's pipeline page: queue depths, dead letters (peek, requeue), the last
reconcile, ingest lag and freshness. Mounted at /admin/pipeline/ behind the admin login."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from redis.exceptions import RedisError

from leaderboard_project.metrics import histogram_summary
from operations.broker import (
    BROKER_ERRORS,
    dead_letters_peek,
    dead_letters_requeue_all,
    dead_queue_name,
    pipeline_queue_names,
    queue_stats,
)
from operations.reconcile import reconcile_last
from rankings.cache import partials_set_aside, redis_client
from rankings.models import Leaderboard

PEEK_LIMIT = 5


def _last_reconcile() -> str:
    try:
        last = reconcile_last(redis_client())
    except RedisError as exc:
        return f"unknown (Redis: {exc})"
    if last is None:
        return "never"
    at, boards = last
    return f"{at.isoformat(timespec='seconds')} ({boards} boards)"


def _set_aside() -> tuple[list[str], str | None]:
    """Partials no root could read, per board and period (their boards were repaired),
    and the error when Redis could not say."""
    try:
        counted = partials_set_aside(redis_client())
    except RedisError as exc:
        return [], f"unknown (Redis: {exc})"
    slugs = dict(Leaderboard.objects.filter(id__in={board for board, _ in counted}).values_list("id", "slug"))
    lines = [f"{slugs[b]} ({period}): {count}" for (b, period), count in sorted(counted.items()) if b in slugs]
    return lines, None


def pipeline_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        # Moving messages changes what the workers do: superusers only.
        if not request.user.is_superuser:
            raise PermissionDenied
        try:
            moved = dead_letters_requeue_all()
            messages.success(request, f"Requeued {moved} dead letter(s) to their original queues.")
        except BROKER_ERRORS as exc:
            messages.error(request, f"Broker unavailable, nothing requeued: {exc}")
        return HttpResponseRedirect(reverse("admin-pipeline"))

    stats = queue_stats(pipeline_queue_names())
    try:
        peeked, peek_error = dead_letters_peek(limit=PEEK_LIMIT), None
    except BROKER_ERRORS as exc:
        peeked, peek_error = [], str(exc)
    dead = stats.get(dead_queue_name())
    set_aside, set_aside_error = _set_aside()
    context = {
        **admin.site.each_context(request),
        "title": "Pipeline",
        "queues": [(name, stat) for name, stat in stats.items()],
        "dead_name": dead_queue_name(),
        "dead_count": dead.messages if dead else None,
        "peeked": peeked,
        "peek_error": peek_error,
        "last_reconcile": _last_reconcile(),
        "set_aside": set_aside,
        "set_aside_error": set_aside_error,
        "latencies": [
            ("Ingest lag (accepted → applied)", histogram_summary("leaderboard_ingest_lag_seconds")),
            ("Freshness (accepted → in the top-N)", histogram_summary("leaderboard_freshness_seconds")),
        ],
    }
    return TemplateResponse(request, "admin/operations/pipeline.html", context)
