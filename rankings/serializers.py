"""Input and output shapes of the leaderboard API."""

from rest_framework import serializers

from rankings.models import INT64_MAX, INT64_MIN, Leaderboard, id_validator


class LeaderboardInputSerializer(serializers.ModelSerializer):
    min_points = serializers.IntegerField(min_value=INT64_MIN, max_value=INT64_MAX, default=0)
    max_points = serializers.IntegerField(min_value=INT64_MIN, max_value=INT64_MAX, default=10**12)
    top_n = serializers.IntegerField(min_value=1, max_value=1000, default=100)

    class Meta:
        model = Leaderboard
        fields = ["slug", "name", "order", "aggregation", "top_n", "min_points", "max_points"]

    def validate(self, attrs: dict) -> dict:
        if attrs["min_points"] > attrs["max_points"]:
            raise serializers.ValidationError({"max_points": ["Must be at least min_points."]})
        return attrs


class LeaderboardOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Leaderboard
        fields = ["slug", "name", "order", "aggregation", "top_n", "min_points", "max_points", "created_at"]


class RankedEntrySerializer(serializers.Serializer):
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


class UserRankOutputSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    score = serializers.IntegerField()
    rank = serializers.IntegerField()
    total = serializers.IntegerField()
    around = RankedEntrySerializer(many=True)
