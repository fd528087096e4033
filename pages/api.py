"""``GET /api/v1/leaderboards/{slug}/activity``: events per second over the last minute."""

import time

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rankings.activity import ACTIVITY_WINDOW_SECONDS, board_activity_series
from rankings.api import board_or_404
from rankings.cache import redis_client

# The headline rate is the mean of the last seconds: one second alone jumps with batching.
RATE_SECONDS = 10

ActivityOutputSerializer = inline_serializer(
    "ActivityOutput",
    {
        "leaderboard": serializers.CharField(),
        "window_seconds": serializers.IntegerField(),
        "events_per_second": serializers.FloatField(allow_null=True),
        "series": serializers.ListField(child=serializers.ListField(child=serializers.IntegerField())),
    },
)


class LeaderboardActivityView(APIView):
    authentication_classes: list = []  # public reads: no key needed, none checked

    @extend_schema(
        responses={200: ActivityOutputSerializer, 404: OpenApiResponse(description="Unknown board")},
        description="Events applied per second over the last minute: `series` is `[epoch_second, events]`, "
        "oldest first; `events_per_second` the mean of the last 10 s, null when Redis is unavailable.",
    )
    def get(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        try:
            series = board_activity_series(redis_client(), board.id, time.time())
        except RedisError:
            # A chart is not worth a 5xx: say "unknown" and let the page try again.
            unknown = {"events_per_second": None, "series": []}
            return Response({"leaderboard": board.slug, "window_seconds": ACTIVITY_WINDOW_SECONDS, **unknown})
        recent = [count for _, count in series[-RATE_SECONDS:]]
        return Response(
            {
                "leaderboard": board.slug,
                "window_seconds": ACTIVITY_WINDOW_SECONDS,
                "events_per_second": sum(recent) / len(recent),
                "series": [[second, count] for second, count in series],
            }
        )
