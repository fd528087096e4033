"""Endpoints about one user: hide or show them on a board, erase them everywhere (admin key)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import RedisError
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rankings.api import board_or_404
from rankings.api_inputs import SyncUnavailable, TaskUnavailable, no_body_or_400, user_id_or_400
from rankings.erasure import erase_task_send, user_erasure_start
from rankings.hiding import user_hide, user_unhide
from scores.auth import ApiKeyRateThrottle, HasAdminKey


class HiddenOutputSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    hidden = serializers.BooleanField()


class ErasingOutputSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    status = serializers.CharField(help_text='"erasing": finished in the background')
    erased_us = serializers.IntegerField(help_text="events accepted up to this time (µs) are erased")


_ERRORS = {
    400: OpenApiResponse(description="Bad user id, or a body"),
    401: OpenApiResponse(description="No or unknown key"),
    403: OpenApiResponse(description="Not an admin key"),
    429: OpenApiResponse(description="Throttled"),
    503: OpenApiResponse(description="Recorded, but Redis or the queue is away: send it again"),
}


class UserHideView(APIView):
    """POST hides the user on the board (every public read leaves them out, their events
    still apply); DELETE shows them again. Both idempotent."""

    permission_classes = [HasAdminKey]
    throttle_classes = [ApiKeyRateThrottle]

    def _set(self, request: Request, slug: str, user_id: str, *, hidden: bool) -> Response:
        board = board_or_404(slug)
        user_id = user_id_or_400(user_id)
        no_body_or_400(request)
        try:
            (user_hide if hidden else user_unhide)(leaderboard=board, user_id=user_id)
        except RedisError as exc:
            raise SyncUnavailable() from exc
        return Response(HiddenOutputSerializer({"user_id": user_id, "hidden": hidden}).data)

    @extend_schema(
        operation_id="v1_leaderboards_users_hide",
        request=None,
        responses={200: HiddenOutputSerializer, 404: OpenApiResponse(description="Unknown board"), **_ERRORS},
    )
    def post(self, request: Request, slug: str, user_id: str) -> Response:
        return self._set(request, slug, user_id, hidden=True)

    @extend_schema(
        operation_id="v1_leaderboards_users_unhide",
        request=None,
        responses={200: HiddenOutputSerializer, 404: OpenApiResponse(description="Unknown board"), **_ERRORS},
    )
    def delete(self, request: Request, slug: str, user_id: str) -> Response:
        return self._set(request, slug, user_id, hidden=False)


class UserEraseView(APIView):
    """DELETE erases the user on every board and period; 202, finished in the background
    (rankings.erasure). Sending it again is safe."""

    permission_classes = [HasAdminKey]
    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(
        operation_id="v1_users_erase",
        request=None,
        responses={
            202: ErasingOutputSerializer,
            404: OpenApiResponse(description="No such path (a user id with a slash)"),
            **_ERRORS,
        },
    )
    def delete(self, request: Request, user_id: str) -> Response:
        user_id = user_id_or_400(user_id)
        no_body_or_400(request)
        tombstone = user_erasure_start(user_id=user_id)
        try:
            erase_task_send(user_id=user_id)
        except (BrokerOperationalError, OSError) as exc:
            # The tombstone is written (ingest already drops the user's older events); the
            # beat resends the task within about a minute for an erasure left unfinished.
            raise TaskUnavailable() from exc
        body = {"user_id": user_id, "status": "erasing", "erased_us": tombstone.erased_us}
        return Response(ErasingOutputSerializer(body).data, status=status.HTTP_202_ACCEPTED)
