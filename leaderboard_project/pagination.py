"""Cursor pagination for lists that grow without bound (the leaderboards)."""

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request


class SlugCursorPagination(CursorPagination):
    """Pages in slug order: a unique key that never changes, so each page is one index
    range scan at any depth, and a board created between two pages is neither skipped
    nor shown twice. ``?limit=`` 1-1000 (default 100); follow ``next`` for the rest.

    DRF ignores a bad ``limit`` and answers 404 to a bad ``cursor``; both are bad input
    here, refused with a 400 that names the parameter.
    """

    ordering = "slug"
    invalid_cursor_message = "Invalid cursor: pass back a next or previous link."
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdecimal() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"Must be an integer, 1 to {self.max_page_size}."]})
        return int(raw)

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]}) from exc
        # A position with a NUL byte was never ours (no slug holds one, and PostgreSQL
        # cannot compare text with it).
        if cursor is not None and "\x00" in (cursor.position or ""):
            raise ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})
        return cursor

    def get_schema_operation_parameters(self, view: object) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
                parameter["description"] = f"Boards per page, 1 to {self.max_page_size} (default {self.page_size})."
        return parameters
