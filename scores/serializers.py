"""Input shapes of the score endpoint: one event, or a batch of up to 1000."""

from rest_framework import serializers

from leaderboard_project.serializers import JSONIntegerField, JSONStringField, KnownFieldsOnly
from rankings.models import INT64_MAX, INT64_MIN, id_validator
from scores.profiles import (
    DISPLAY_NAME_MAX,
    METADATA_MAX_BYTES,
    METADATA_MAX_KEYS,
    display_name_problem,
    metadata_problem,
)
from scores.submission import MAX_BATCH, submission_convert, submitted_event


class DisplayNameField(JSONStringField):
    def to_internal_value(self, data: object) -> str:
        value = super().to_internal_value(data)
        problem = display_name_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class MetadataField(serializers.JSONField):
    def to_internal_value(self, data: object) -> dict:
        problem = metadata_problem(data)
        if problem:
            raise serializers.ValidationError(problem)
        return data


class ScoreEventSerializer(KnownFieldsOnly, serializers.Serializer):
    user_id = JSONStringField(max_length=64, validators=[id_validator], trim_whitespace=False)
    points = JSONIntegerField(min_value=INT64_MIN, max_value=INT64_MAX)
    event_id = JSONStringField(max_length=64, validators=[id_validator], required=False, trim_whitespace=False)
    display_name = DisplayNameField(
        required=False,
        min_length=1,
        max_length=DISPLAY_NAME_MAX,
        trim_whitespace=False,
        help_text=f"Shown with the entry: 1-{DISPLAY_NAME_MAX} characters, no control characters.",
    )
    metadata = MetadataField(
        required=False,
        help_text=(
            f"Shown with the entry: a JSON object of at most {METADATA_MAX_KEYS} keys, "
            f"at most {METADATA_MAX_BYTES} bytes as compact JSON."
        ),
    )

    def validate_points(self, value: int) -> int:
        board = self.context["leaderboard"]
        if not board.min_points <= value <= board.max_points:
            raise serializers.ValidationError(
                f"Must be between {board.min_points} and {board.max_points} on this leaderboard."
            )
        return value


class ScoreBatchSerializer(KnownFieldsOnly, serializers.Serializer):
    events = ScoreEventSerializer(many=True, min_length=1, max_length=MAX_BATCH)


class ScoreSubmitSerializer(serializers.Serializer):
    """Either the fields of one event, or ``events``: a list of them, as ``SubmittedEvent``s."""

    def to_internal_value(self, data: object) -> dict:
        events = submission_convert(data, self.context["leaderboard"])
        if events is not None:
            return {"events": events}
        if isinstance(data, dict) and "events" in data:
            extra = sorted(set(data) & set(ScoreEventSerializer().fields))
            if extra:
                raise serializers.ValidationError({field: ["Not allowed beside 'events'."] for field in extra})
            batch = ScoreBatchSerializer(data=data, context=self.context)
            batch.is_valid(raise_exception=True)
            return {"events": [submitted_event(event) for event in batch.validated_data["events"]]}
        single = ScoreEventSerializer(data=data, context=self.context)
        single.is_valid(raise_exception=True)
        return {"events": [submitted_event(single.validated_data)]}


class AcceptedSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
