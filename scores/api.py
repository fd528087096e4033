"""The score endpoint: validate, publish with broker confirms, answer 202.

Behind HAProxy most score requests never get here: the front door (``scores.front_door``,
bin/web --app scores) answers the plain, valid ones before Django's request cycle, with the
same parts (key copies, the leased throttle, the typed records, admission, the publisher),
and hands everything else to this view, which words every refusal."""

from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leaderboard_project.api import ServiceUnavailable
from leaderboard_project.metrics import events_accepted
from rankings.api import board_or_404
from scores.admission import admission_sheds_everyone
from scores.auth import ApiKeyRateThrottle, HasApiKey
from scores.serializers import AcceptedSerializer, ScoreBatchSerializer, ScoreEventSerializer, ScoreSubmitSerializer
from scores.services import BrokerUnavailable, Overloaded, score_events_submit


class ScoreSubmitView(APIView):
    permission_classes = [HasApiKey]
    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="ScoreSubmission",
            serializers=[ScoreEventSerializer, ScoreBatchSerializer],
            resource_type_field_name=None,
        ),
        responses={
            202: AcceptedSerializer,
            400: OpenApiResponse(description="Invalid events"),
            401: OpenApiResponse(description="No or unknown key"),
            403: OpenApiResponse(description="Key not allowed on this board"),
            404: OpenApiResponse(description="Unknown board"),
            413: OpenApiResponse(description="Body too large"),
            429: OpenApiResponse(description="Throttled"),
            503: OpenApiResponse(description="Broker unavailable"),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        if not request.auth.may_write(board):
            raise exceptions.PermissionDenied(f"This key may not write to '{board.slug}'.")
        if admission_sheds_everyone():  # refused before the body is read and parsed
            return _overloaded(Overloaded("overloaded"))
        submission = ScoreSubmitSerializer(data=request.data, context={"leaderboard": board})
        submission.is_valid(raise_exception=True)
        try:
            accepted = score_events_submit(
                leaderboard=board, events=submission.validated_data["events"], tenant=request.auth.admission_tenant
            )
        except BrokerUnavailable as exc:
            raise ServiceUnavailable() from exc
        except Overloaded as exc:
            return _overloaded(exc)
        events_accepted(board.slug, accepted)
        return Response(AcceptedSerializer({"accepted": accepted}).data, status=status.HTTP_202_ACCEPTED)


def _overloaded(refusal: Overloaded) -> Response:
    return Response({"detail": refusal.detail}, status=refusal.status, headers={"Retry-After": "1"})
