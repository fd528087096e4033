"""Display names and metadata (DESIGN, "Additions v3"): kept per (board, period, user) by
last-writer-wins on (accepted time, event_id), field by field, and shown on every read,
through the real pipeline on both strategies; from the database while the Redis index is
not complete; gone with an entry's deletion."""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator

from rankings import cache
from rankings import redis_keys as keys
from rankings.models import Leaderboard
from rankings.services import index_rebuild, ranking_handoff
from scores.models import EntryProfile
from scores.services import now_micros, score_events_apply, score_events_submit
from tasks.messages import ScoreEvent
from tests.checks import assert_top_consistent, db_scores, eventually
from tests.conftest import bearer

pytestmark = pytest.mark.pipeline


def url(board: Leaderboard, tail: str) -> str:
    return f"/api/v1/leaderboards/{board.slug}/{tail}"


def seen(entries: list[dict]) -> list[tuple]:
    return [(e["rank"], e["user_id"], e["score"], e["display_name"], e["metadata"]) for e in entries]


EXPECTED = [(1, "a", 6, "Ann", {"lvl": 1}), (2, "b", 3, "Bob", None), (3, "c", 1, None, None)]


def seeded(make_board) -> Leaderboard:
    board = make_board(top_n=10)
    score_events_submit(
        leaderboard=board,
        events=[
            {"user_id": "a", "points": 5, "event_id": "a1", "display_name": "Ann", "metadata": {"lvl": 1}},
            {"user_id": "b", "points": 3, "event_id": "b1", "display_name": "Bob"},
            {"user_id": "c", "points": 1, "event_id": "c1"},
        ],
    )
    eventually(lambda: _assert_equal(db_scores(board), {"a": 5, "b": 3, "c": 1}))
    # Later: an event without the fields leaves them; a resend of a1 with another name is
    # a duplicate and changes nothing.
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 1, "event_id": "a2"}])
    score_events_submit(
        leaderboard=board, events=[{"user_id": "a", "points": 5, "event_id": "a1", "display_name": "Evil"}]
    )

    def drained() -> None:
        assert db_scores(board) == {"a": 6, "b": 3, "c": 1}
        assert_top_consistent(board)

    eventually(drained)
    return board


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def assert_reads_show_profiles(api, board: Leaderboard) -> None:
    top = api.get(url(board, "top"), {"limit": 10}).json()
    assert seen(top["entries"]) == EXPECTED
    assert seen(api.get(url(board, "ranks"), {"count": 10}).json()["entries"]) == EXPECTED
    friends = api.get(url(board, "users"), {"ids": "c,a"}).json()
    assert seen(friends["entries"]) == [EXPECTED[0], EXPECTED[2]]
    user = api.get(url(board, "users/b"), {"around": 1}).json()
    assert (user["display_name"], user["metadata"]) == ("Bob", None)
    assert seen(user["around"]) == EXPECTED


def test_it_shows_display_names_and_metadata_on_every_read(worker, make_board, api):
    board = seeded(make_board)
    eventually(lambda: assert_reads_show_profiles(api, board))
    stored = EntryProfile.objects.get(user_id="a", leaderboard_id=board.id, period=board.current_period())
    assert (stored.display_name, stored.metadata, stored.version) == ("Ann", {"lvl": 1}, 1)


def test_it_answers_from_the_database_while_the_index_is_not_ready_and_its_rebuild_restores_them(
    worker, make_board, api
):
    board = seeded(make_board)
    eventually(lambda: assert_reads_show_profiles(api, board))
    period = board.current_period()
    client = cache.redis_client()
    # As after a flush: the index and the profiles gone, a repair already asked for (so no
    # worker rebuilds meanwhile): the reads take the profiles from the database.
    client.set(keys.repair_asked_key(board.id, period), "1", ex=60)
    client.delete(
        keys.ready_key(board.id, period),
        keys.index_key(board.id, period),
        keys.versions_key(board.id, period),
        keys.profiles_key(board.id, period),
        keys.profile_order_key(board.id, period),
    )
    assert_reads_show_profiles(api, board)
    assert index_rebuild(leaderboard=board, period=period)
    assert set(cache.profiles_read(client, board.id, period, ["a", "b", "c"])) == {"a", "b"}
    assert_reads_show_profiles(api, board)


def test_it_keeps_each_fields_latest_value_whatever_order_the_events_are_applied_in(transactional_db, make_board):
    board = make_board()
    period = board.current_period()
    t = now_micros()
    newer = ScoreEvent(board.id, "a", 1, "n", t + 10, "New", None)
    older = ScoreEvent(board.id, "a", 1, "o", t, "Old", json.dumps({"m": 1}))
    tie = ScoreEvent(board.id, "a", 1, "m", t + 10, "Tie-lower-id", None)  # same time, lower event id
    for batch in ([newer], [older], [tie], [newer, older]):  # the last: a redelivery
        ranking_handoff(changed=score_events_apply(events=batch), oldest_accepted_us=t)
    stored = EntryProfile.objects.get(user_id="a", leaderboard_id=board.id, period=period)
    assert (stored.display_name, stored.metadata) == ("New", {"m": 1})
    assert stored.version == 2  # "New", then the metadata; the tie and the redelivery moved nothing
    fields = cache.profiles_read(cache.redis_client(), board.id, period, ["a"])["a"]
    assert json.loads(b"{" + fields + b"}") == {"display_name": "New", "metadata": {"m": 1}}
    # An older copy arriving late at Redis does not replace the newer one.
    late = ScoreEvent(board.id, "b", 1, "b1", t, "B-old", None)
    (old_copy,) = [c.profile for c in score_events_apply(events=[late])]
    ranking_handoff(
        changed=score_events_apply(events=[ScoreEvent(board.id, "b", 1, "b2", t + 5, "B-new", None)]),
        oldest_accepted_us=t,
    )
    cache.profiles_apply(cache.redis_client(), board.id, period, [("b", old_copy)])
    fields = cache.profiles_read(cache.redis_client(), board.id, period, ["b"])["b"]
    assert json.loads(b"{" + fields + b"}")["display_name"] == "B-new"


def test_the_top_etag_changes_when_only_a_display_name_does(worker, make_board, api):
    board = seeded(make_board)
    eventually(lambda: assert_reads_show_profiles(api, board))
    first = api.get(url(board, "top"), {"limit": 10})
    # Zero points: no score moves, only the name.
    score_events_submit(leaderboard=board, events=[{"user_id": "b", "points": 0, "display_name": "Robert"}])

    def renamed() -> None:
        again = api.get(url(board, "top"), {"limit": 10})
        assert seen(again.json()["entries"])[1] == (2, "b", 3, "Robert", None)
        assert again["ETag"] != first["ETag"]
        assert api.get(url(board, "top"), {"limit": 10}, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200

    eventually(renamed)


def test_an_entry_deletion_takes_its_profile_and_a_later_event_starts_afresh(worker, make_board, api, admin_key):
    board = seeded(make_board)
    period = board.current_period()
    eventually(lambda: assert_reads_show_profiles(api, board))
    assert bearer(api, admin_key).delete(url(board, "users/a")).status_code == 202

    def gone() -> None:
        assert not EntryProfile.objects.filter(user_id="a", leaderboard_id=board.id).exists()
        assert cache.profiles_read(cache.redis_client(), board.id, period, ["a"]) == {}
        assert api.get(url(board, "users/a")).status_code == 404

    eventually(gone)

    # Accepted after the deletion: it counts once the deletion finished, with no profile.
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 2, "event_id": "again"}])

    def back() -> None:
        answer = api.get(url(board, "users/a"))
        assert answer.status_code == 200
        user = answer.json()
        assert (user["score"], user["display_name"], user["metadata"]) == (2, None, None)

    eventually(back)


def test_the_schema_describes_the_new_fields():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    event = components["ScoreEventRequest"]["properties"]
    assert {"display_name", "metadata"} <= set(event)
    assert event["display_name"]["maxLength"] == 64
    for name in ("RankedEntry", "UserRankOutput"):
        entry = components[name]["properties"]
        assert entry["display_name"]["nullable"] and entry["metadata"]["nullable"], name
