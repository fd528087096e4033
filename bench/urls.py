"""Routes of the benchmark's bare endpoint; mounted under /bench/ only with LEADERBOARD_BENCH_ENDPOINTS=1."""

from django.urls import path

from bench.views import NoopView

urlpatterns = [path("noop", NoopView.as_view(), name="bench-noop")]
