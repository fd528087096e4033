"""Operators' views of boards and their published top-N (read-only)."""

from collections.abc import Iterable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from rankings import cache, index_upkeep
from rankings.board_changes import CHANGEABLE_FIELDS, NotManual, board_reset, leaderboard_update
from rankings.deletion import board_deletion_start
from rankings.hiding import user_hide, user_unhide
from rankings.models import HiddenUser, Leaderboard, TopN
from rankings.ordering import from_micros
from rankings.services import index_build_chunk_send, topn_rebuild


@admin.register(Leaderboard)
class LeaderboardAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "order", "aggregation", "top_n", "reset", "created_at", "deleting", "rank_index"]
    list_filter = ["deleting", "reset"]
    search_fields = ["slug", "name"]
    # Ranking fields shape stored scores and indexes; they are fixed once a board exists.
    # So are the periods: the keys of stored scores follow the reset and its time zone.
    # The name, size and points range change as the API's PATCH changes them.
    fixed_fields = ["slug", "order", "aggregation", "reset", "reset_timezone", "keep_periods"]

    def get_readonly_fields(self, request: HttpRequest, obj: Leaderboard | None = None) -> list[str]:
        return self.fixed_fields if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Leaderboard, form: object, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Through the service: a new top_n has the open periods' top-N rebuilt.
        changed = [name for name in getattr(form, "changed_data", []) if name in CHANGEABLE_FIELDS]
        leaderboard_update(leaderboard=obj, changes={name: getattr(obj, name) for name in changed})

    actions = ["rebuild_top_n", "rebuild_rank_index", "reset_now"]

    @admin.action(description="Reset now (boards that reset manually): close the current version")
    def reset_now(self, request: HttpRequest, queryset: QuerySet[Leaderboard]) -> None:
        for board in queryset:
            try:
                done = board_reset(leaderboard=board)
            except NotManual:
                message = f"{board.slug} resets {board.reset}, not manually: left as it is."
                self.message_user(request, message, messages.WARNING)
                continue
            message = f"{board.slug}: {done.closed} closed, {done.current} current."
            self.message_user(request, message, messages.SUCCESS)

    @admin.action(description="Rebuild the top-N from the database")
    def rebuild_top_n(self, request: HttpRequest, queryset: QuerySet[Leaderboard]) -> None:
        for board in queryset:
            top = topn_rebuild(leaderboard=board, period=board.current_period())
            self.message_user(request, f"Top-N of {board.slug} rebuilt: {len(top.entries)} entries.", messages.SUCCESS)

    @admin.action(description="Rebuild the rank index from the database")
    def rebuild_rank_index(self, request: HttpRequest, queryset: QuerySet[Leaderboard]) -> None:
        for board in queryset:
            period = board.current_period()
            token = index_upkeep.index_build_claim(leaderboard=board, period=period)
            if token is None:
                message = f"Rank index of {board.slug}: a rebuild is already running."
                self.message_user(request, message, messages.WARNING)
                continue
            # The first chunk runs here (a small board is done at once); the rest run as
            # rank tasks, one per chunk, followed in the "rank index" column.
            outcome = index_upkeep.index_build_run(leaderboard=board, period=period, token=token, budget_seconds=2.0)
            if outcome == "done":
                self.message_user(request, f"Rank index of {board.slug} rebuilt.", messages.SUCCESS)
            elif outcome == "more":
                index_build_chunk_send(leaderboard_id=board.id, period=period, token=token)
                message = f"Rank index of {board.slug}: rebuild running in the background (see its progress)."
                self.message_user(request, message, messages.SUCCESS)
            else:
                self.message_user(request, f"Rank index of {board.slug}: rebuild taken over.", messages.WARNING)

    @admin.display(description="rank index")
    def rank_index(self, obj: Leaderboard) -> str:
        """The current period's index: complete, or a rebuild's progress."""
        period = obj.current_period()
        try:
            client = cache.redis_client()
            progress = index_upkeep.index_build_progress(client, obj.id, period)
            ready = cache.index_is_ready(client, obj.id, period)
        except Exception:  # noqa: BLE001 - the list must render with Redis down
            return "unknown (Redis unreachable)"
        if progress is not None:
            share = f" ({100 * progress.done // progress.total}%)" if progress.total else ""
            state = "rebuilding" if progress.active else "rebuild stalled, resumes at the next reconcile"
            return f"{state}: {progress.done:,} of ~{progress.total:,} rows{share}"
        return "complete" if ready else "missing (served from the database; rebuild asked)"

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
    list_display = ["leaderboard", "period", "closed", "version", "as_of", "size"]
    list_filter = ["closed"]
    readonly_fields = ["leaderboard", "period", "closed", "version", "as_of", "ranking"]
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


@admin.register(HiddenUser)
class HiddenUserAdmin(admin.ModelAdmin):
    """Hidden users: added and deleted only through the hiding services, which keep the
    rank index and the top-N in step (a plain save or delete would not)."""

    list_display = ["user_id", "leaderboard", "hidden_at"]
    list_filter = ["leaderboard"]
    search_fields = ["=user_id"]
    search_help_text = "Exact user id."
    fields = ["leaderboard", "user_id"]

    def has_change_permission(self, request: HttpRequest, obj: HiddenUser | None = None) -> bool:
        return False  # listed and viewed; an edit would move a hide without the services

    def save_model(self, request: HttpRequest, obj: HiddenUser, form: object, change: bool) -> None:
        user_hide(leaderboard=obj.leaderboard, user_id=obj.user_id)
        # The admin links to what it saved.
        obj.pk = HiddenUser.objects.get(leaderboard=obj.leaderboard, user_id=obj.user_id).pk

    def delete_model(self, request: HttpRequest, obj: HiddenUser) -> None:
        user_unhide(leaderboard=obj.leaderboard, user_id=obj.user_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[HiddenUser]) -> None:
        for hidden in queryset.select_related("leaderboard"):
            user_unhide(leaderboard=hidden.leaderboard, user_id=hidden.user_id)
