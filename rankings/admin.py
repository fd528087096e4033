"""Operators' views of boards and their published top-N (read-only)."""

from collections.abc import Iterable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from rankings.deletion import board_deletion_start
from rankings.models import Leaderboard, TopN
from rankings.ordering import from_micros
from rankings.services import index_rebuild, topn_rebuild


@admin.register(Leaderboard)
class LeaderboardAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "order", "aggregation", "top_n", "created_at", "deleting"]
    list_filter = ["deleting"]
    search_fields = ["slug", "name"]
    # Ranking fields shape stored scores and indexes; they are fixed once a board exists.
    fixed_fields = ["slug", "order", "aggregation", "top_n", "min_points", "max_points"]

    def get_readonly_fields(self, request: HttpRequest, obj: Leaderboard | None = None) -> list[str]:
        return self.fixed_fields if obj is not None else []

    actions = ["rebuild_top_n", "rebuild_rank_index"]

    @admin.action(description="Rebuild the top-N from the database")
    def rebuild_top_n(self, request: HttpRequest, queryset: QuerySet[Leaderboard]) -> None:
        for board in queryset:
            top = topn_rebuild(leaderboard=board, period=board.current_period())
            self.message_user(request, f"Top-N of {board.slug} rebuilt: {len(top.entries)} entries.", messages.SUCCESS)

    @admin.action(description="Rebuild the rank index from the database")
    def rebuild_rank_index(self, request: HttpRequest, queryset: QuerySet[Leaderboard]) -> None:
        for board in queryset:
            # Runs in the request: about 30,000 rows/s (docs/benchmark.json), so a
            # board of a million users takes half a minute.
            if index_rebuild(leaderboard=board, period=board.current_period()):
                self.message_user(request, f"Rank index of {board.slug} rebuilt.", messages.SUCCESS)
            else:
                message = f"Rank index of {board.slug}: a rebuild is already running."
                self.message_user(request, message, messages.WARNING)

    # Deleting is a background job (rankings.deletion): the confirmation page must not
    # load every score and event id of the board, as Django's collector would.
    def get_deleted_objects(self, objs: Iterable[Leaderboard], request: HttpRequest) -> tuple:
        boards = list(objs)
        summary = [
            format_html("{} (its scores, event ids and cached rankings are removed in the background)", board.slug)
            for board in boards
        ]
        perms_needed = set() if self.has_delete_permission(request) else {Leaderboard._meta.verbose_name}
        return summary, {Leaderboard._meta.verbose_name_plural: len(boards)}, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: Leaderboard) -> None:
        board_deletion_start(leaderboard=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Leaderboard]) -> None:
        for board in queryset:
            board_deletion_start(leaderboard=board)


@admin.register(TopN)
class TopNAdmin(admin.ModelAdmin):
    list_display = ["leaderboard", "period", "version", "as_of", "size"]
    readonly_fields = ["leaderboard", "period", "version", "as_of", "ranking"]
    exclude = ["entries"]

    @admin.display(description="entries")
    def size(self, obj: TopN) -> int:
        return len(obj.entries)

    @admin.display(description="ranking")
    def ranking(self, obj: TopN) -> str:
        return format_html_join(
            "\n",
            "<div>{}. {} — {} (since {})</div>",
            ((rank, row[0], row[1], from_micros(row[2]).isoformat()) for rank, row in enumerate(obj.entries, 1)),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TopN | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TopN | None = None) -> bool:
        return False
