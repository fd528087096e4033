"""Public HTML pages: the list of boards and a board's live page.

The pages are static shells; their JavaScript polls the JSON API (``/top`` conditionally,
``/activity``), so a page costs the server what its API calls cost and nothing more.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from rankings.api import board_or_404
from rankings.models import Leaderboard

# Boards a page of the list shows; the next page starts after the last slug (keyset: one
# index range scan at any depth, no count of every board).
BOARDS_PER_PAGE = 100

# How often an open page asks for the top-N; docs/operations.md has what that costs.
TOP_POLL_MS = 1000
ACTIVITY_POLL_MS = 2000


@require_GET
def board_list(request: HttpRequest) -> HttpResponse:
    after = request.GET.get("after", "")
    boards = Leaderboard.objects.filter(deleting=False).order_by("slug")  # a board being deleted is gone
    page = list((boards.filter(slug__gt=after) if after else boards)[: BOARDS_PER_PAGE + 1])
    more = len(page) > BOARDS_PER_PAGE
    page = page[:BOARDS_PER_PAGE]
    context = {"boards": page, "next_after": page[-1].slug if more else None}
    return render(request, "pages/board_list.html", context)


@require_GET
def board_detail(request: HttpRequest, slug: str) -> HttpResponse:
    board = board_or_404(slug)
    context = {
        "board": board,
        "limit": min(10, board.top_n),
        "top_poll_ms": TOP_POLL_MS,
        "activity_poll_ms": ACTIVITY_POLL_MS,
    }
    return render(request, "pages/board_detail.html", context)
