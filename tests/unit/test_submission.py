"""The typed submission records (msgspec) agree with the DRF serializers on every input they accept."""

import json

import msgspec
import pytest

from rankings.models import Leaderboard
from scores.serializers import ScoreBatchSerializer, ScoreEventSerializer
from scores.submission import submission_convert, submission_decode

BOARD = Leaderboard(slug="b", name="b", min_points=-10, max_points=100)

ACCEPTED = [
    {"user_id": "a", "points": 5},
    {"user_id": "A.b:c-d_e", "points": -10, "event_id": "x" * 64},
    {"events": [{"user_id": "a", "points": 100}, {"user_id": "b", "points": 0, "event_id": "e"}]},
    {"events": [{"user_id": "u", "points": 1}] * 1000},
]
REFUSED = [
    [],
    "text",
    {"user_id": "a"},
    {"user_id": "a", "points": 101},
    {"user_id": "a", "points": -11},
    {"user_id": "a", "points": True},
    {"user_id": "a", "points": 1.5},
    {"user_id": "a", "points": "5"},
    {"user_id": "a", "points": 1.0},
    {"user_id": "a", "points": 10**20},
    {"user_id": "a", "points": 1, "eventid": "e"},
    {"user_id": "", "points": 1},
    {"user_id": "a b", "points": 1},
    {"user_id": "é", "points": 1},
    {"user_id": "a\n", "points": 1},
    {"user_id": "x" * 65, "points": 1},
    {"user_id": "a", "points": 1, "event_id": None},
    {"user_id": "a", "points": 1, "event_id": "x" * 65},
    {"user_id": 5, "points": 1},
    {"user_id": "a", "points": 1, "event_id": 9},
    {"events": []},
    {"events": [{"user_id": "u", "points": 1}] * 1001},
    {"events": [{"user_id": "a", "points": 1}], "user_id": "a"},
    {"events": [{"user_id": "a", "points": 1}, "nope"]},
    {"events": {"user_id": "a", "points": 1}},
]


def _fields(events: list) -> list[dict]:
    return [{k: v for k, v in msgspec.structs.asdict(e).items() if v is not msgspec.UNSET} for e in events]


def _both_ways(data: object) -> list:
    """The records from the parsed body (the DRF path) and from the raw bytes (the front
    door): the two must always agree."""
    converted = submission_convert(data, BOARD)
    decoded = submission_decode(json.dumps(data).encode(), BOARD)
    assert converted == decoded
    return converted


@pytest.mark.parametrize("data", ACCEPTED)
def test_it_accepts_what_the_serializers_accept(data):
    events = _both_ways(data)
    assert events is not None
    if "events" in data:
        serializer = ScoreBatchSerializer(data=data, context={"leaderboard": BOARD})
        assert serializer.is_valid(), serializer.errors
        assert _fields(events) == [dict(e) for e in serializer.validated_data["events"]]
    else:
        serializer = ScoreEventSerializer(data=data, context={"leaderboard": BOARD})
        assert serializer.is_valid(), serializer.errors
        assert _fields(events) == [dict(serializer.validated_data)]


@pytest.mark.parametrize("data", REFUSED)
def test_it_leaves_everything_else_to_the_serializers(data):
    assert _both_ways(data) is None


@pytest.mark.parametrize("body", [b"", b"{", b"[1,", b'{"user_id": "a", "points": 1} x', b"\xff\xfe"])
def test_it_leaves_bodies_that_are_no_json_to_the_serializers(body):
    assert submission_decode(body, BOARD) is None


@pytest.mark.parametrize("points", ["5", "5.0", 5.0, True], ids=repr)
def test_it_and_the_serializers_both_refuse_points_that_are_not_json_integers(points):
    # The fast path hands these on; the serializers must not then accept them after all.
    data = {"user_id": "a", "points": points}
    assert _both_ways(data) is None
    serializer = ScoreEventSerializer(data=data, context={"leaderboard": BOARD})
    assert not serializer.is_valid()
    assert list(serializer.errors) == ["points"]
