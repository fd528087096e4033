"""What the admin endpoints about one user share: the user id from the path, no body,
and the 503s of a request recorded while Redis or the queue was away."""

from typing import Any

from rest_framework import exceptions, serializers, status
from rest_framework.request import Request

from rankings.models import id_validator


class UserIdSerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=64, validators=[id_validator], trim_whitespace=False)


class SyncUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Recorded, but Redis could not be updated; send the same request again."
    default_code = "service_unavailable"


class TaskUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Recorded, but the queue is unavailable; send the same request again."
    default_code = "service_unavailable"


def user_id_or_400(user_id: str) -> str:
    query = UserIdSerializer(data={"user_id": user_id})
    query.is_valid(raise_exception=True)
    return query.validated_data["user_id"]


def no_body_or_400(request: Request) -> None:
    """These requests take no body: any field in one is refused by name, not ignored."""
    data: Any = request.data
    if isinstance(data, dict) and data:
        raise serializers.ValidationError({name: ["Unknown field: this request takes no body."] for name in data})
    if data and not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": ["This request takes no body."]})
