from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from rankings.api import (
    LeaderboardDetailView,
    LeaderboardListView,
    LeaderboardRanksView,
    LeaderboardTopView,
    LeaderboardUsersView,
    LeaderboardUserView,
)
from scores.api import ScoreSubmitView

api_v1 = [
    path("leaderboards/", LeaderboardListView.as_view(), name="leaderboard-list"),
    path("leaderboards/<str:slug>/", LeaderboardDetailView.as_view(), name="leaderboard-detail"),
    path("leaderboards/<str:slug>/scores", ScoreSubmitView.as_view(), name="score-submit"),
    path("leaderboards/<str:slug>/top", LeaderboardTopView.as_view(), name="leaderboard-top"),
    path("leaderboards/<str:slug>/users/<str:user_id>", LeaderboardUserView.as_view(), name="leaderboard-user"),
    path("leaderboards/<str:slug>/ranks", LeaderboardRanksView.as_view(), name="leaderboard-ranks"),
    path("leaderboards/<str:slug>/users", LeaderboardUsersView.as_view(), name="leaderboard-users"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/", include(api_v1)),
]

if settings.LEADERBOARD_BENCH_ENDPOINTS:
    urlpatterns.append(path("bench/", include("bench.urls")))
