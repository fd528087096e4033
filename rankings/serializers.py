"""Input and output shapes of the leaderboard API."""

from rest_framework import serializers

from leaderboard_project.serializers import JSONIntegerField, KnownFieldsOnly
from rankings.models import INT64_MAX, INT64_MIN, Leaderboard, id_validator

BOARD_PERIOD_FIELDS = ["reset", "reset_timezone", "keep_periods"]


class LeaderboardInputSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    min_points = serializers.IntegerField(min_value=INT64_MIN, max_value=INT64_MAX, default=0)
    max_points = serializers.IntegerField(min_value=INT64_MIN, max_value=INT64_MAX, default=10**12)
    top_n = serializers.IntegerField(min_value=1, max_value=1000, default=100)
    keep_periods = serializers.IntegerField(
        min_value=1, max_value=1000, default=12, help_text="past periods that stay readable, 1 to 1000"
    )

    class Meta:
        model = Leaderboard
        fields = ["slug", "name", "order", "aggregation", "top_n", "min_points", "max_points", *BOARD_PERIOD_FIELDS]

    def validate(self, attrs: dict) -> dict:
        if attrs["min_points"] > attrs["max_points"]:
            raise serializers.ValidationError({"max_points": ["Must be at least min_points."]})
        return attrs


# Fixed once a board exists: they shape its stored rows, keys and periods.
BOARD_FIXED_FIELDS = ["slug", "order", "aggregation", *BOARD_PERIOD_FIELDS]


class LeaderboardUpdateSerializer(serializers.Serializer):
    """PATCH: any of name, top_n, min_points, max_points; a fixed field is refused by name."""

    name = serializers.CharField(max_length=200, required=False)
    top_n = JSONIntegerField(min_value=1, max_value=1000, required=False)
    min_points = JSONIntegerField(min_value=INT64_MIN, max_value=INT64_MAX, required=False)
    max_points = JSONIntegerField(min_value=INT64_MIN, max_value=INT64_MAX, required=False)

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, dict):
            errors = {
                name: (
                    ["Fixed once the leaderboard is created."]
                    if name in BOARD_FIXED_FIELDS
                    else [f"Unknown field; the fields are {', '.join(self.fields)}."]
                )
                for name in data
                if name not in self.fields
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)

    def validate(self, attrs: dict) -> dict:
        board: Leaderboard = self.context["leaderboard"]
        low, high = attrs.get("min_points", board.min_points), attrs.get("max_points", board.max_points)
        if low > high:
            field = "max_points" if "max_points" in attrs else "min_points"
            raise serializers.ValidationError({field: [f"min_points ({low}) must not exceed max_points ({high})."]})
        return attrs


class LeaderboardDeletingSerializer(serializers.Serializer):
    leaderboard = serializers.CharField()
    status = serializers.CharField(help_text='"deleting": its data goes in the background')


class BoardResetSerializer(serializers.Serializer):
    leaderboard = serializers.CharField()
    closed = serializers.CharField(help_text='the version just closed, e.g. "v1": readable with ?period= while kept')
    current = serializers.CharField(help_text='the version events count in from now, e.g. "v2"')


class EntryDeletingSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    status = serializers.CharField(help_text='"deleting": removed from every period once drained')


class LeaderboardOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Leaderboard
        fields = [
            "slug",
            "name",
            "order",
            "aggregation",
            "top_n",
            "min_points",
            "max_points",
            *BOARD_PERIOD_FIELDS,
            "created_at",
        ]


class ProfileFieldsSerializer(serializers.Serializer):
    """Who the entry is: the latest display name and metadata its events carried."""

    display_name = serializers.CharField(allow_null=True, help_text="null until an event carries one")
    metadata = serializers.DictField(allow_null=True, help_text="a JSON object; null until an event carries one")


class RankedEntrySerializer(ProfileFieldsSerializer):
    rank = serializers.IntegerField()
    user_id = serializers.CharField()
    score = serializers.IntegerField()


class TopOutputSerializer(serializers.Serializer):
    leaderboard = serializers.CharField()
    as_of = serializers.DateTimeField(allow_null=True)
    entries = RankedEntrySerializer(many=True)


class TopQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, required=False)

    def validate_limit(self, value: int) -> int:
        top_n = self.context["leaderboard"].top_n
        if value > top_n:
            raise serializers.ValidationError(f"Ensure this value is less than or equal to {top_n} (top_n).")
        return value


class UserRankQuerySerializer(serializers.Serializer):
    user_id = serializers.CharField(max_length=64, validators=[id_validator], trim_whitespace=False)
    around = serializers.IntegerField(min_value=0, max_value=50, default=0)


class UserRankOutputSerializer(ProfileFieldsSerializer):
    user_id = serializers.CharField()
    score = serializers.IntegerField()
    rank = serializers.IntegerField()
    total = serializers.IntegerField()
    top_percent = serializers.FloatField(help_text="100 x rank / total: the user is in the top top_percent %.")
    around = RankedEntrySerializer(many=True)


# Ranks beyond any board's size only read past the end; the cap keeps start + count in 64 bits.
MAX_RANK = 2**62


class RankRangeQuerySerializer(serializers.Serializer):
    start = serializers.IntegerField(min_value=1, max_value=MAX_RANK, default=1, help_text="first rank, from 1")
    count = serializers.IntegerField(min_value=1, max_value=1000, default=100, help_text="ranks to read, 1 to 1000")


class RankRangeOutputSerializer(serializers.Serializer):
    leaderboard = serializers.CharField()
    period = serializers.CharField()
    total = serializers.IntegerField()
    entries = RankedEntrySerializer(many=True)


MAX_USER_IDS = 100


def _is_valid_id(user_id: str) -> bool:
    return bool(id_validator.regex.match(user_id))


class UserIdsQuerySerializer(serializers.Serializer):
    # 100 ids of at most 64 characters and their commas; longer is refused before splitting.
    ids = serializers.CharField(
        max_length=MAX_USER_IDS * 65, trim_whitespace=False, help_text="1 to 100 user ids, separated by commas"
    )

    def validate_ids(self, value: str) -> list[str]:
        ids = list(dict.fromkeys(value.split(",")))  # repeated ids are read once, in first-seen order
        if len(ids) > MAX_USER_IDS:
            raise serializers.ValidationError(f"Give at most {MAX_USER_IDS} user ids; got {len(ids)}.")
        bad = [user_id for user_id in ids if not _is_valid_id(user_id)]
        if bad:
            raise serializers.ValidationError(
                f"Not a valid user id: {', '.join(repr(b) for b in bad[:5])}. {id_validator.message}"
            )
        return ids


class UsersOutputSerializer(serializers.Serializer):
    leaderboard = serializers.CharField()
    period = serializers.CharField()
    entries = RankedEntrySerializer(many=True)


class PeriodOutputSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="'all', '2026-11-28', '2026-W48' or '2026-11', in the board's time zone")
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    closed = serializers.BooleanField(help_text="over, with its final top-N stored")


class PeriodsOutputSerializer(serializers.Serializer):
    leaderboard = serializers.CharField()
    current = serializers.CharField()
    periods = PeriodOutputSerializer(many=True, help_text="newest first: the current one and the kept past ones")
