from collections.abc import Callable

from django.conf import settings
from django.contrib import admin
from django.http import HttpResponse
from django.urls import URLPattern, include, path
from django.views.decorators.common import no_append_slash

from leaderboard_project.schema_view import SchemaView
from operations.admin_views import pipeline_view
from operations.views import healthz, metrics, readyz, readyz_web
from pages.api import LeaderboardActivityView
from pages.views import board_detail, board_list
from rankings.api import (
    LeaderboardDetailView,
    LeaderboardListView,
    LeaderboardRanksView,
    LeaderboardResetView,
    LeaderboardTopView,
    LeaderboardUsersView,
    LeaderboardUserView,
)
from rankings.api_people import UserEraseView, UserHideView
from rankings.period_api import LeaderboardPeriodsView
from scores.api import ScoreSubmitView

handler400 = "leaderboard_project.errors.bad_request"
handler403 = "leaderboard_project.errors.permission_denied"
handler404 = "leaderboard_project.errors.page_not_found"
handler500 = "leaderboard_project.errors.server_error"


def api_path(route: str, view: Callable[..., HttpResponse], name: str) -> URLPattern:
    """A route of the API: its path without the trailing slash is a JSON 404 naming the
    route, not CommonMiddleware's HTML redirect, which turns a POST into a GET and drops
    its body (a board creation sent there would come back as the list of boards)."""
    return path(route, no_append_slash(view), name=name)


api_v1 = [
    api_path("leaderboards/", LeaderboardListView.as_view(), name="leaderboard-list"),
    api_path("leaderboards/<str:slug>/", LeaderboardDetailView.as_view(), name="leaderboard-detail"),
    api_path("leaderboards/<str:slug>/scores", ScoreSubmitView.as_view(), name="score-submit"),
    api_path("leaderboards/<str:slug>/top", LeaderboardTopView.as_view(), name="leaderboard-top"),
    api_path("leaderboards/<str:slug>/users/<str:user_id>", LeaderboardUserView.as_view(), name="leaderboard-user"),
    api_path("leaderboards/<str:slug>/activity", LeaderboardActivityView.as_view(), name="leaderboard-activity"),
    api_path("leaderboards/<str:slug>/ranks", LeaderboardRanksView.as_view(), name="leaderboard-ranks"),
    api_path("leaderboards/<str:slug>/users", LeaderboardUsersView.as_view(), name="leaderboard-users"),
    api_path("leaderboards/<str:slug>/periods", LeaderboardPeriodsView.as_view(), name="leaderboard-periods"),
    api_path("leaderboards/<str:slug>/reset", LeaderboardResetView.as_view(), name="leaderboard-reset"),
    api_path("leaderboards/<str:slug>/users/<str:user_id>/hide", UserHideView.as_view(), name="leaderboard-user-hide"),
    api_path("users/<str:user_id>", UserEraseView.as_view(), name="user-erase"),
]

urlpatterns = [
    path("admin/pipeline/", admin.site.admin_view(pipeline_view), name="admin-pipeline"),
    path("admin/", admin.site.urls),
    api_path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/v1/", include(api_v1)),
    path("boards/", board_list, name="board-list"),
    path("boards/<str:slug>/", board_detail, name="board-detail"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("readyz/web", readyz_web, name="readyz-web"),
    path("metrics", metrics, name="metrics"),
]

if settings.LEADERBOARD_BENCH_ENDPOINTS:
    urlpatterns.append(path("bench/", include("bench.urls")))
