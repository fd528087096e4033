from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from operations.admin_views import pipeline_view
from operations.views import healthz, metrics, readyz
from pages.api import LeaderboardActivityView
from pages.views import board_detail, board_list
from rankings.api import (
    LeaderboardDetailView,
    LeaderboardListView,
    LeaderboardRanksView,
    LeaderboardTopView,
    LeaderboardUsersView,
    LeaderboardUserView,
)
from rankings.api_people import UserEraseView, UserHideView
from rankings.period_api import LeaderboardPeriodsView
from scores.api import ScoreSubmitView

api_v1 = [
    path("leaderboards/", LeaderboardListView.as_view(), name="leaderboard-list"),
    path("leaderboards/<str:slug>/", LeaderboardDetailView.as_view(), name="leaderboard-detail"),
    path("leaderboards/<str:slug>/scores", ScoreSubmitView.as_view(), name="score-submit"),
    path("leaderboards/<str:slug>/top", LeaderboardTopView.as_view(), name="leaderboard-top"),
    path("leaderboards/<str:slug>/users/<str:user_id>", LeaderboardUserView.as_view(), name="leaderboard-user"),
    path("leaderboards/<str:slug>/activity", LeaderboardActivityView.as_view(), name="leaderboard-activity"),
    path("leaderboards/<str:slug>/ranks", LeaderboardRanksView.as_view(), name="leaderboard-ranks"),
    path("leaderboards/<str:slug>/users", LeaderboardUsersView.as_view(), name="leaderboard-users"),
    path("leaderboards/<str:slug>/periods", LeaderboardPeriodsView.as_view(), name="leaderboard-periods"),
    path("leaderboards/<str:slug>/users/<str:user_id>/hide", UserHideView.as_view(), name="leaderboard-user-hide"),
    path("users/<str:user_id>", UserEraseView.as_view(), name="user-erase"),
]

urlpatterns = [
    path("admin/pipeline/", admin.site.admin_view(pipeline_view), name="admin-pipeline"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/", include(api_v1)),
    path("boards/", board_list, name="board-list"),
    path("boards/<str:slug>/", board_detail, name="board-detail"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

if settings.LEADERBOARD_BENCH_ENDPOINTS:
    urlpatterns.append(path("bench/", include("bench.urls")))
