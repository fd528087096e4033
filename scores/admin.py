"""Operators' views of scores (read-only, searchable by user) and API keys."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from leaderboard_project.admin_paging import EstimatedCountPaginator
from scores.models import ApiKey, Score


@admin.register(Score)
class ScoreAdmin(admin.ModelAdmin):
    """Every query of the list is an index scan at any size: ordered by the unique key
    (user_id, leaderboard, period) instead of Django's "-pk" (no index starts with id),
    searched on that key's first column, and never fully counted."""

    list_display = ["user_id", "leaderboard", "period", "score", "reached_at", "version"]
    list_filter = ["leaderboard"]
    search_fields = ["=user_id"]
    search_help_text = "Exact user id."
    readonly_fields = ["user_id", "leaderboard", "period", "score", "sort_key", "reached_at", "version"]
    # A total order (the unique constraint), so Django adds no "-pk" tie-break.
    ordering = ["user_id", "leaderboard_id", "period"]
    sortable_by: list[str] = []  # other orders would sort the whole table
    show_full_result_count = False  # a full count of a distributed hot table is expensive
    paginator = EstimatedCountPaginator

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Django's "=" search is iexact, UPPER(user_id) = UPPER(term), which no index
        # serves; user ids are case-sensitive anyway.
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(user_id=term), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Score | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Score | None = None) -> bool:
        # A deleted row would stay in the rank index and the top-N (and come back later
        # at version 1, below the version the index holds): scores leave only through
        # the services (board deletion, user erasure), which keep them in step.
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "leaderboard", "tenant", "is_admin", "is_active", "created_at"]
    list_filter = ["is_admin", "is_active"]
    readonly_fields = ["prefix", "created_at"]
    search_fields = ["name", "prefix", "tenant"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are made by `manage.py create_api_key`, which shows the secret once.
        return False
