"""The bare DRF endpoint: the web framework's floor, served by the same web tier (bin/web) as the service.

It has no authentication, permission or throttle classes on purpose: it measures what
DRF and the web server cost before any of the service's own work.
"""

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

_FIXED = {"leaderboard": "noop", "entries": [{"rank": 1, "user_id": "noop", "score": 1}]}


class NoopView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request: Request) -> Response:
        return Response(_FIXED)

    def post(self, request: Request) -> Response:
        data = request.data  # parsed like the real endpoint's body
        accepted = len(data["events"]) if isinstance(data, dict) and isinstance(data.get("events"), list) else 1
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)
