"""Leaderboard endpoints: create and list boards, the top-N, a user's rank."""

from dataclasses import asdict

from django.conf import settings
from django.db import IntegrityError
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from leaderboard_project.pagination import SlugCursorPagination
from rankings.models import Leaderboard
from rankings.selectors import leaderboard_by_slug, leaderboard_top, leaderboard_user_rank
from rankings.serializers import (
    LeaderboardInputSerializer,
    LeaderboardOutputSerializer,
    TopOutputSerializer,
    TopQuerySerializer,
    UserRankOutputSerializer,
    UserRankQuerySerializer,
)
from rankings.services import leaderboard_create
from scores.auth import ApiKeyRateThrottle, HasAdminKey


def board_or_404(slug: str) -> Leaderboard:
    board = leaderboard_by_slug(slug=slug)
    if board is None:
        raise Http404(f"No leaderboard '{slug}'.")
    return board


def _is_slug_conflict(exc: IntegrityError) -> bool:
    constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""
    return constraint.startswith("rankings_leaderboard_slug")


class LeaderboardListView(generics.ListAPIView):
    """GET pages through the boards (cursor, by slug); POST creates one."""

    throttle_classes = [ApiKeyRateThrottle]
    serializer_class = LeaderboardOutputSerializer
    pagination_class = SlugCursorPagination

    def get_permissions(self) -> list:
        return [HasAdminKey()] if self.request.method == "POST" else []

    def get_authenticators(self) -> list:
        # The list is a public read like the others: no key needed, none checked.
        request = getattr(self, "request", None)  # None while drf-spectacular builds the schema
        return super().get_authenticators() if request is None or request.method == "POST" else []

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


class LeaderboardDetailView(APIView):
    authentication_classes: list = []  # public reads: no key needed, none checked

    @extend_schema(responses={200: LeaderboardOutputSerializer, 404: OpenApiResponse(description="Unknown board")})
    def get(self, request: Request, slug: str) -> Response:
        return Response(LeaderboardOutputSerializer(board_or_404(slug)).data)


class LeaderboardTopView(APIView):
    authentication_classes: list = []  # public reads: no key needed, none checked

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description="1 to the board's top_n; default min(10, top_n)")],
        responses={200: TopOutputSerializer, 400: OpenApiResponse(description="Bad limit"), 404: None},
    )
    def get(self, request: Request, slug: str) -> Response:
        board = board_or_404(slug)
        query = TopQuerySerializer(data=request.query_params, context={"leaderboard": board})
        query.is_valid(raise_exception=True)
        limit = query.validated_data.get("limit", min(10, board.top_n))
        strategy = settings.LEADERBOARD_RANKING_STRATEGY
        top = leaderboard_top(leaderboard=board, limit=limit, strategy=strategy)
        as_of = top.as_of if top.as_of is not None else timezone.now()
        # The entries are plain dicts already in TopOutputSerializer's shape; rendering
        # them through the serializer cost more than the whole Redis read.
        return Response({"leaderboard": board.slug, "as_of": as_of, "entries": top.entries})


class LeaderboardUserView(APIView):
    authentication_classes: list = []  # public reads: no key needed, none checked

    @extend_schema(
        parameters=[OpenApiParameter("around", int, description="0-50 neighbours on each side; default 0")],
        responses={200: UserRankOutputSerializer, 400: OpenApiResponse(description="Bad query"), 404: None},
    )
    def get(self, request: Request, slug: str, user_id: str) -> Response:
        board = board_or_404(slug)
        query = UserRankQuerySerializer(data={**request.query_params.dict(), "user_id": user_id})
        query.is_valid(raise_exception=True)
        view = leaderboard_user_rank(leaderboard=board, user_id=user_id, around=query.validated_data["around"])
        if view is None:
            raise Http404(f"User '{user_id}' has no score on '{board.slug}'.")
        # Plain data in UserRankOutputSerializer's shape (documented above), rendered directly.
        return Response(asdict(view))
