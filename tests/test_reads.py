"""The reads players ask for, through the real pipeline on both strategies: rank ranges,
``top_percent``, the friends board, and the top-N's ETag; and the same answers from the
database when the Redis rank index is not complete."""

import pytest
from django_redis import get_redis_connection

from rankings import redis_keys
from rankings.models import Leaderboard, TopN
from scores.services import score_events_submit
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores, db_top, eventually

pytestmark = pytest.mark.pipeline

USERS = 30


def api_url(board: Leaderboard, tail: str) -> str:
    return f"/api/v1/leaderboards/{board.slug}/{tail}"


def seeded_board(make_board) -> tuple[Leaderboard, list[tuple[str, int]]]:
    """A board of 30 users with distinct scores once the pipeline drained, and its true order."""
    board = make_board(top_n=10)
    events = [{"user_id": f"u{n:02d}", "points": (n * 37) % 101 + 1} for n in range(USERS)]
    score_events_submit(leaderboard=board, events=events)
    expected = {e["user_id"]: e["points"] for e in events}

    def settled() -> None:
        assert db_scores(board) == expected
        assert_top_consistent(board)
        assert_ranks_consistent(board, ["u00", f"u{USERS - 1:02d}"])

    eventually(settled)
    return board, db_top(board, limit=USERS)


def ranked(order: list[tuple[str, int]], start: int, count: int) -> list[dict]:
    return [
        {"rank": start + i, "user_id": user_id, "score": score, "display_name": None, "metadata": None}
        for i, (user_id, score) in enumerate(order[start - 1 : start - 1 + count])
    ]


def read_all(api, board: Leaderboard, order: list[tuple[str, int]]) -> dict:
    """Every read this file checks, as answered now."""
    friends = [order[17][0], "nobody", order[2][0], order[29][0], order[2][0]]
    return {
        "first": api.get(api_url(board, "ranks"), {"count": 10}).json(),
        "deep": api.get(api_url(board, "ranks"), {"start": 21, "count": 5}).json(),
        "tail": api.get(api_url(board, "ranks"), {"start": 28, "count": 10}).json(),
        "past": api.get(api_url(board, "ranks"), {"start": 31}).json(),
        "friends": api.get(api_url(board, "users"), {"ids": ",".join(friends)}).json(),
        "strangers": api.get(api_url(board, "users"), {"ids": "nobody,ghost"}).json(),
        "user": api.get(api_url(board, f"users/{order[5][0]}"), {"around": 1}).json(),
    }


def expected_reads(board: Leaderboard, order: list[tuple[str, int]]) -> dict:
    head = {"leaderboard": board.slug, "period": "all"}
    return {
        "first": {**head, "total": USERS, "entries": ranked(order, 1, 10)},
        "deep": {**head, "total": USERS, "entries": ranked(order, 21, 5)},
        "tail": {**head, "total": USERS, "entries": ranked(order, 28, 3)},
        "past": {**head, "total": USERS, "entries": []},
        # By rank, the unknown id left out and the repeated one once.
        "friends": {**head, "entries": [ranked(order, r, 1)[0] for r in (3, 18, 30)]},
        "strangers": {**head, "entries": []},
        "user": {
            "user_id": order[5][0],
            "score": order[5][1],
            "rank": 6,
            "total": USERS,
            "top_percent": 20.0,
            "display_name": None,
            "metadata": None,
            "around": ranked(order, 5, 3),
        },
    }


def test_it_reads_rank_ranges_percentiles_and_friends(worker, make_board, api):
    board, order = seeded_board(make_board)
    assert read_all(api, board, order) == expected_reads(board, order)


def test_it_gives_the_same_answers_from_the_database_while_the_index_is_not_ready(worker, make_board, api, strategy):
    board, order = seeded_board(make_board)
    period = board.current_period()
    client = get_redis_connection("default")
    # The index and the top-N copy gone, as after a Redis flush; a repair already asked for
    # (within the last 10 s), so nobody rebuilds them meanwhile: only the database can answer.
    client.set(redis_keys.repair_asked_key(board.id, period), "1", ex=60)
    client.delete(
        redis_keys.ready_key(board.id, period),
        redis_keys.index_key(board.id, period),
        redis_keys.versions_key(board.id, period),
        redis_keys.top_key(board.id, period),
    )
    assert read_all(api, board, order) == expected_reads(board, order)
    top = api.get(api_url(board, "top"), {"limit": 10})
    assert top.status_code == 200
    assert [(e["user_id"], e["score"]) for e in top.json()["entries"]] == order[:10]
    # A read never writes the caches: they stay empty until a rank worker repairs them.
    assert not client.exists(redis_keys.ready_key(board.id, period), redis_keys.top_key(board.id, period))

    # Without the recent request, the next cold read asks a rank worker, which rebuilds both.
    client.delete(redis_keys.repair_asked_key(board.id, period))
    assert api.get(api_url(board, "ranks")).status_code == 200
    assert client.exists(redis_keys.repair_asked_key(board.id, period))
    eventually(lambda: assert_ranks_consistent(board, [user for user, _ in order]), timeout=60)
    assert_top_consistent(board)
    assert read_all(api, board, order) == expected_reads(board, order)


def test_it_serves_the_top_with_an_etag_and_answers_304_until_it_changes(worker, make_board, api, strategy):
    board, order = seeded_board(make_board)
    first = api.get(api_url(board, "top"), {"limit": 3})
    assert first.status_code == 200
    assert first["Content-Type"] == "application/json"
    assert first["Cache-Control"] == "no-cache"
    body = first.json()
    assert body["entries"] == ranked(order, 1, 3)
    assert body["leaderboard"] == board.slug
    if strategy == "merge_tree":
        # as_of is the time the root wrote this top-N, as DRF would render it.
        as_of = TopN.objects.get(leaderboard=board).as_of
        assert body["as_of"] == as_of.isoformat().replace("+00:00", "Z")
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = api.get(api_url(board, "top"), {"limit": 3}, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    # A weak form of the tag, in a list, matches too; another limit is another answer.
    listed = api.get(api_url(board, "top"), {"limit": 3}, HTTP_IF_NONE_MATCH=f'"x", W/{etag}')
    assert listed.status_code == 304
    assert api.get(api_url(board, "top"), {"limit": 4}, HTTP_IF_NONE_MATCH=etag).status_code == 200

    score_events_submit(leaderboard=board, events=[{"user_id": "newcomer", "points": 10_000}])

    def changed() -> None:
        fresh = api.get(api_url(board, "top"), {"limit": 3}, HTTP_IF_NONE_MATCH=etag)
        assert fresh.status_code == 200
        assert fresh["ETag"] != etag
        assert fresh.json()["entries"][0] == {
            "rank": 1,
            "user_id": "newcomer",
            "score": 10_000,
            "display_name": None,
            "metadata": None,
        }

    eventually(changed)
