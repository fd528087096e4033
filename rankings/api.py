"""Leaderboard endpoints: create and list boards, the top-N, a user's rank, rank ranges and friends boards."""

import hashlib
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from kombu.exceptions import OperationalError as BrokerOperationalError
from rest_framework import generics, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leaderboard_project.pagination import SlugCursorPagination
from rankings.api_inputs import TaskUnavailable, no_body_or_400, user_id_or_400
from rankings.board_changes import NotManual, board_reset, leaderboard_update
from rankings.deletion import board_deletion_start
from rankings.entry_deletion import EntryRef, entry_delete_task_send, entry_deletion_start
from rankings.models import Leaderboard
from rankings.period_api import PERIOD_PARAMETER, read_period
from rankings.period_selectors import top_strategy
from rankings.selectors import (
    TopJson,
    leaderboard_by_slug,
    leaderboard_rank_range,
    leaderboard_ranks_of,
    leaderboard_top_json,
    leaderboard_user_rank,
    render_json,
)
from rankings.serializers import (
    BoardResetSerializer,
    EntryDeletingSerializer,
    LeaderboardDeletingSerializer,
    LeaderboardInputSerializer,
    LeaderboardOutputSerializer,
    LeaderboardUpdateSerializer,
    RankRangeOutputSerializer,
    RankRangeQuerySerializer,
    TopOutputSerializer,
    TopQuerySerializer,
    UserIdsQuerySerializer,
    UserRankOutputSerializer,
    UserRankQuerySerializer,
    UsersOutputSerializer,
)
from rankings.services import leaderboard_create
from scores.auth import ApiKeyRateThrottle, HasAdminKey


class JsonOnly(BaseContentNegotiation):
    """The read views answer JSON whatever the Accept header says (every answer under
    /api/ is JSON): parsing Accept cost the hot read more than its Redis round trip."""

    def select_parser(self, request: Request, parsers: list) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


def board_or_404(slug: str) -> Leaderboard:
    board = leaderboard_by_slug(slug=slug)
    if board is None:
        raise Http404(f"No leaderboard '{slug}'.")
    return board


def _is_slug_conflict(exc: IntegrityError) -> bool:
    constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""
    return constraint.startswith("rankings_leaderboard_slug")


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class PublicReadAdminWrite:
    """A view whose reads are public (no key needed, none checked, so none throttled:
    the key throttle counts keys) and whose writes take an admin key."""

    def get_permissions(self) -> list:
        return [HasAdminKey()] if self.request.method in _WRITES else []

    def get_authenticators(self) -> list:
        request = getattr(self, "request", None)  # None while drf-spectacular builds the schema
        return super().get_authenticators() if request is None or request.method in _WRITES else []


class LeaderboardListView(PublicReadAdminWrite, generics.ListAPIView):
    """GET pages through the boards (cursor, by slug); POST creates one."""

    throttle_classes = [ApiKeyRateThrottle]
    serializer_class = LeaderboardOutputSerializer
    pagination_class = SlugCursorPagination

    def get_queryset(self) -> QuerySet[Leaderboard]:
        return Leaderboard.objects.filter(deleting=False)  # a board being deleted is gone for clients

    @extend_schema(
        responses={200: LeaderboardOutputSerializer(many=True), 400: OpenApiResponse(description="Bad query")}
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(
        request=LeaderboardInputSerializer,
        responses={
            201: LeaderboardOutputSerializer,
            400: OpenApiResponse(description="Invalid fields, or the slug is taken"),
            401: OpenApiResponse(description="No or unknown key"),
            403: OpenApiResponse(description="Not an admin key"),
            413: OpenApiResponse(description="Body too large"),
            429: OpenApiResponse(description="Throttled"),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = LeaderboardInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            board = leaderboard_create(**serializer.validated_data)
        except IntegrityError as exc:
            # The serializer saw the slug free, but a concurrent request took it first.
            if not _is_slug_conflict(exc):
                raise
            slug = serializer.validated_data["slug"]
            raise serializers.ValidationError({"slug": [f"A leaderboard '{slug}' already exists."]}) from exc
        return Response(LeaderboardOutputSerializer(board).data, status=status.HTTP_201_CREATED)


_ADMIN_ERRORS = {
    401: OpenApiResponse(description="No or unknown key"),
    403: OpenApiResponse(description="Not an admin key"),
    404: OpenApiResponse(description="Unknown board"),
    429: OpenApiResponse(description="Throttled"),
}


class LeaderboardDetailView(PublicReadAdminWrite, APIView):
    """GET reads a board (public); PATCH changes its name, size or points range, DELETE
    deletes it (admin key)."""

    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(responses={200: LeaderboardOutputSerializer, 404: OpenApiResponse(description="Unknown board")})
    def get(self, request: Request, slug: str) -> Response:
        return Response(LeaderboardOutputSerializer(board_or_404(slug)).data)

    @extend_schema(
        request=LeaderboardUpdateSerializer,
        responses={
            200: LeaderboardOutputSerializer,
            400: OpenApiResponse(description="Invalid fields, or a field fixed once the board exists"),
            **_ADMIN_ERRORS,
        },
    )
    def patch(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        changes = LeaderboardUpdateSerializer(data=request.data, context={"leaderboard": board})
        changes.is_valid(raise_exception=True)
        board = leaderboard_update(leaderboard=board, changes=dict(changes.validated_data))
        return Response(LeaderboardOutputSerializer(board).data)

    @extend_schema(request=None, responses={202: LeaderboardDeletingSerializer, **_ADMIN_ERRORS})
    def delete(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        # Gone for readers and ingest at once; its rows go in the background (a lost task
        # is sent again by the beat's "resume board deletions").
        board_deletion_start(leaderboard=board)
        body = {"leaderboard": slug, "status": "deleting"}
        return Response(LeaderboardDeletingSerializer(body).data, status=status.HTTP_202_ACCEPTED)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weak comparison, as RFC 9110 asks)."""
    if not if_none_match:
        return False
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in parse_etags(if_none_match))


def _top_etag(board: Leaderboard, period: str, top: TopJson, limit: int) -> str:
    # Each period has its own top-N (and TopN versions): the period is part of the tag.
    if top.version is not None and not top.profiled:
        # A TopN version names one list, and its as_of, for good: no need to hash it.
        return f'"{board.id}.{period}.{top.version}.{limit}"'
    # The live index (sorted_set) has no version, and a display name or metadata may change
    # under one: the entries' bytes are the tag.
    digest = hashlib.blake2b(b",".join(top.entries), digest_size=8).hexdigest()
    return f'"{board.id}.{period}.{"" if top.version is None else top.version}h{digest}.{limit}"'


def _top_limit(request: Request, board: Leaderboard) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return min(10, board.top_n)
    # A plain valid number skips the serializer, whose set-up cost more than the Redis read;
    # anything else gets its validation and error messages.
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= board.top_n:
        return int(raw)
    query = TopQuerySerializer(data=request.query_params, context={"leaderboard": board})
    query.is_valid(raise_exception=True)
    return query.validated_data.get("limit", min(10, board.top_n))


class LeaderboardTopView(APIView):
    """The hot read: the entries come from Redis already rendered and go out as they came,
    without DRF's renderer (which cost more than the Redis read). Errors still go through
    DRF's exception handling, so a 400 or 404 is the usual JSON."""

    authentication_classes: list = []  # public reads: no key needed, none checked
    content_negotiation_class = JsonOnly

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description="1 to the board's top_n; default min(10, top_n)"),
            PERIOD_PARAMETER,
            OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, description="an ETag of an earlier answer"),
        ],
        responses={
            200: TopOutputSerializer,
            304: OpenApiResponse(description="Not modified: the top-N is still the one of the ETag sent"),
            400: OpenApiResponse(description="Bad limit or period"),
            404: OpenApiResponse(description="Unknown board, or a period the board does not keep"),
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        board = board_or_404(slug)
        limit = _top_limit(request, board)
        period = read_period(request, board)
        strategy = top_strategy(leaderboard=board, period=period, strategy=settings.LEADERBOARD_RANKING_STRATEGY)
        top = leaderboard_top_json(leaderboard=board, period=period, limit=limit, strategy=strategy)
        # no-cache: a client may keep the answer but must revalidate it, which is a 304 here.
        headers = {"ETag": _top_etag(board, period, top, limit), "Cache-Control": "no-cache"}
        if _matches(request.headers.get("If-None-Match"), headers["ETag"]):
            return HttpResponseNotModified(headers=headers)
        body = b'{"leaderboard":%b,"as_of":%b,"entries":[%b]}' % (
            render_json(board.slug),
            render_json(top.as_of),
            b",".join(top.entries),
        )
        return HttpResponse(body, content_type="application/json", headers=headers)


class LeaderboardUserView(PublicReadAdminWrite, APIView):
    """GET reads a user's rank (public); DELETE removes the user's entry on this board,
    every period (admin key), finished in the background (rankings.entry_deletion)."""

    content_negotiation_class = JsonOnly
    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(
        operation_id="v1_leaderboards_users_delete",
        request=None,
        responses={
            202: EntryDeletingSerializer,
            400: OpenApiResponse(description="Bad user id, or a body"),
            503: OpenApiResponse(description="Recorded, but the queue is away: send it again"),
            **_ADMIN_ERRORS,
        },
    )
    def delete(self, request: Request, slug: str, user_id: str) -> Response:
        board = board_or_404(slug)
        user_id = user_id_or_400(user_id)
        no_body_or_400(request)
        entry_deletion_start(leaderboard=board, user_id=user_id)
        try:
            entry_delete_task_send(EntryRef(user_id, board.id))
        except (BrokerOperationalError, OSError) as exc:
            # The tombstone is written: the beat resends the task within about a minute.
            raise TaskUnavailable() from exc
        body = {"user_id": user_id, "status": "deleting"}
        return Response(EntryDeletingSerializer(body).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("around", int, description="0-50 neighbours on each side; default 0"),
            PERIOD_PARAMETER,
        ],
        responses={200: UserRankOutputSerializer, 400: OpenApiResponse(description="Bad query"), 404: None},
    )
    def get(self, request: Request, slug: str, user_id: str) -> Response:
        board = board_or_404(slug)
        query = UserRankQuerySerializer(data={**request.query_params.dict(), "user_id": user_id})
        query.is_valid(raise_exception=True)
        period = read_period(request, board)
        around = query.validated_data["around"]
        view = leaderboard_user_rank(leaderboard=board, user_id=user_id, around=around, period=period)
        if view is None:
            raise Http404(f"User '{user_id}' has no score on '{board.slug}'.")
        # Plain data in UserRankOutputSerializer's shape (documented above), rendered directly.
        return Response(asdict(view))


class LeaderboardRanksView(APIView):
    """Any exact rank range, at any depth (the rank index answers in O(log n + count))."""

    authentication_classes: list = []  # public reads: no key needed, none checked
    content_negotiation_class = JsonOnly

    @extend_schema(
        parameters=[RankRangeQuerySerializer, PERIOD_PARAMETER],
        responses={200: RankRangeOutputSerializer, 400: OpenApiResponse(description="Bad query"), 404: None},
    )
    def get(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        query = RankRangeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        period = read_period(request, board)
        ranks = leaderboard_rank_range(leaderboard=board, period=period, **query.validated_data)
        # Plain data in RankRangeOutputSerializer's shape, rendered directly.
        return Response({"leaderboard": board.slug, "period": period, "total": ranks.total, "entries": ranks.entries})


class LeaderboardUsersView(APIView):
    """The friends board: the ranks of up to 100 given users, by rank; users without a
    score are left out."""

    authentication_classes: list = []  # public reads: no key needed, none checked
    content_negotiation_class = JsonOnly

    @extend_schema(
        operation_id="v1_leaderboards_users_list",
        parameters=[UserIdsQuerySerializer, PERIOD_PARAMETER],
        responses={200: UsersOutputSerializer, 400: OpenApiResponse(description="Bad ids"), 404: None},
    )
    def get(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        query = UserIdsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        period = read_period(request, board)
        entries = leaderboard_ranks_of(leaderboard=board, period=period, user_ids=query.validated_data["ids"])
        return Response({"leaderboard": board.slug, "period": period, "entries": entries})


class LeaderboardResetView(APIView):
    """POST closes a manual board's current version and starts the next (admin key)."""

    permission_classes = [HasAdminKey]
    throttle_classes = [ApiKeyRateThrottle]

    @extend_schema(
        request=None,
        responses={
            200: BoardResetSerializer,
            400: OpenApiResponse(description="The board does not reset manually, or a body"),
            **_ADMIN_ERRORS,
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        no_body_or_400(request)
        try:
            done = board_reset(leaderboard=board)
        except NotManual as exc:
            detail = f'This board resets "{exc}", not manually: only a board made with reset "manual" is reset here.'
            raise serializers.ValidationError({"reset": [detail]}) from exc
        body = {"leaderboard": board.slug, "closed": done.closed, "current": done.current}
        return Response(BoardResetSerializer(body).data)
