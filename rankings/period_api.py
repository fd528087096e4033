"""The periods of a board (``GET …/{slug}/periods``) and the ``?period=`` every read takes."""

from dataclasses import asdict

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rankings.models import Leaderboard
from rankings.period_selectors import leaderboard_period_named, leaderboard_periods
from rankings.periods import PeriodMalformed, PeriodUnknown
from rankings.selectors import leaderboard_by_slug
from rankings.serializers import PeriodsOutputSerializer

PERIOD_PARAMETER = OpenApiParameter(
    "period",
    str,
    description=(
        "'all' (boards that never reset), a day '2026-11-28', an ISO week '2026-W48' or a month '2026-11', in the "
        "board's time zone; default the current period. 400 when malformed, 404 when the board does not keep it."
    ),
)


def read_period(request: Request, board: Leaderboard) -> str:
    """The period a read asks for (``?period=``, default the current one): a 400 naming
    ``period`` when the key is malformed, a 404 when the board has no such period now."""
    try:
        return leaderboard_period_named(leaderboard=board, key=request.query_params.get("period"))
    except PeriodMalformed as exc:
        raise serializers.ValidationError({"period": [str(exc)]}) from exc
    except PeriodUnknown as exc:
        raise Http404(f"No period '{request.query_params['period']}' on '{board.slug}': {exc}") from exc


class LeaderboardPeriodsView(APIView):
    """The current period and the kept past ones, newest first."""

    authentication_classes: list = []  # public reads: no key needed, none checked

    @extend_schema(responses={200: PeriodsOutputSerializer, 404: OpenApiResponse(description="Unknown board")})
    def get(self, request: Request, slug: str) -> Response:
        board = leaderboard_by_slug(slug=slug)
        if board is None:
            raise Http404(f"No leaderboard '{slug}'.")
        return Response(asdict(leaderboard_periods(leaderboard=board)))
