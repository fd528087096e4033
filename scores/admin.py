"""Operators' views of scores (read-only, searchable by user) and API keys."""

from django.contrib import admin
from django.http import HttpRequest

from scores.models import ApiKey, Score


@admin.register(Score)
class ScoreAdmin(admin.ModelAdmin):
    list_display = ["user_id", "leaderboard", "period", "score", "reached_at", "version"]
    list_filter = ["leaderboard"]
    search_fields = ["=user_id"]
    readonly_fields = ["user_id", "leaderboard", "period", "score", "sort_key", "reached_at", "version"]
    show_full_result_count = False  # a full count of a distributed hot table is expensive

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Score | None = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "leaderboard", "is_admin", "is_active", "created_at"]
    list_filter = ["is_admin", "is_active"]
    readonly_fields = ["prefix", "created_at"]
    search_fields = ["name", "prefix"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are made by `manage.py create_api_key`, which shows the secret once.
        return False
