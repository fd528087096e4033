"""Hiding a user on a board: through the real pipeline (broker, worker, Postgres, Redis), per
strategy, and the endpoints' refusals. A hidden user is in no public read, their events
still apply, and unhiding restores them exactly and at once."""

import random
import threading
import time

import pytest
from django.urls import reverse

from leaderboard_project.celery import app as celery_app
from rankings import cache, index_upkeep, redis_keys
from rankings.hiding import user_hide
from rankings.models import HiddenUser, Leaderboard
from rankings.selectors import (
    _rank_range_from_database,
    _ranks_of_from_database,
    _user_rank_from_database,
    db_top_rows,
    leaderboard_top_json,
)
from scores.models import ApiKey
from scores.services import score_events_submit
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores, eventually, make_score
from tests.conftest import bearer


def submit(board: Leaderboard, *events: tuple[str, int]) -> None:
    payload = [{"user_id": user_id, "points": points} for user_id, points in events]
    assert score_events_submit(leaderboard=board, events=payload) == len(payload)


def hide(api, admin_key: str, board: Leaderboard, user_id: str, hidden: bool = True) -> None:
    url = f"/api/v1/leaderboards/{board.slug}/users/{user_id}/hide"
    response = (bearer(api, admin_key).post if hidden else bearer(api, admin_key).delete)(url)
    assert response.status_code == 200, response.content
    assert response.json() == {"user_id": user_id, "hidden": hidden}


def reads(api, board: Leaderboard, ids: str) -> dict:
    """Every public read of the board, as a client sees it."""
    base = f"/api/v1/leaderboards/{board.slug}"
    top = api.get(f"{base}/top", {"limit": board.top_n}).json()["entries"]
    ranks = api.get(f"{base}/ranks", {"count": 1000}).json()
    users = api.get(f"{base}/users", {"ids": ids}).json()["entries"]
    return {
        "top": [(e["rank"], e["user_id"], e["score"]) for e in top],
        "ranks": [(e["rank"], e["user_id"], e["score"]) for e in ranks["entries"]],
        "total": ranks["total"],
        "users": [(e["rank"], e["user_id"], e["score"]) for e in users],
    }


def assert_index_counters_agree(board: Leaderboard) -> None:
    """The rank index holds exactly the database's visible rows (members and versions)."""
    period = board.current_period()
    index = cache.index_counters(cache.redis_client(), board.id, period)
    assert index == index_upkeep.db_counters(leaderboard=board, period=period)


def settled(board: Leaderboard, expected: dict[str, int], visible: list[str]) -> None:
    def check() -> None:
        assert db_scores(board) == expected
        assert_top_consistent(board)
        assert_ranks_consistent(board, visible)
        assert_index_counters_agree(board)

    eventually(check)


@pytest.mark.pipeline
def test_it_hides_a_top_user_from_every_read_and_shows_them_again_exactly(worker, make_board, api, admin_key):
    board = make_board(top_n=3)
    submit(board, ("a", 100), ("b", 90), ("c", 80), ("d", 70), ("e", 60))
    settled(board, {"a": 100, "b": 90, "c": 80, "d": 70, "e": 60}, ["a", "b", "c", "d", "e"])

    hide(api, admin_key, board, "b")
    hide(api, admin_key, board, "b")  # idempotent
    assert HiddenUser.objects.filter(leaderboard=board, user_id="b").count() == 1
    # At once (no wait): the others close up, b is in no read and no total.
    assert reads(api, board, "a,b,c") == {
        "top": [(1, "a", 100), (2, "c", 80), (3, "d", 70)],
        "ranks": [(1, "a", 100), (2, "c", 80), (3, "d", 70), (4, "e", 60)],
        "total": 4,
        "users": [(1, "a", 100), (2, "c", 80)],
    }
    base = f"/api/v1/leaderboards/{board.slug}/users"
    assert api.get(f"{base}/b").status_code == 404
    assert api.get(f"{base}/b").json()["detail"]
    around = api.get(f"{base}/c", {"around": 2}).json()
    assert (around["rank"], around["total"]) == (2, 4)
    assert [e["user_id"] for e in around["around"]] == ["a", "c", "d", "e"]
    assert_top_consistent(board)  # the top-N repaired: Redis and the table, without b

    # Their events still apply while hidden (b jumps to the top), unseen.
    submit(board, ("b", 50), ("c", 5))
    settled(board, {"a": 100, "b": 140, "c": 85, "d": 70, "e": 60}, ["a", "c", "d", "e"])
    assert api.get(f"{base}/b").status_code == 404
    assert [u for _, u, _ in reads(api, board, "a,b")["top"]] == ["a", "c", "d"]

    hide(api, admin_key, board, "b", hidden=False)
    hide(api, admin_key, board, "b", hidden=False)  # idempotent
    assert not HiddenUser.objects.filter(leaderboard=board).exists()
    # At once, exactly, with what was sent while hidden.
    assert reads(api, board, "a,b,c") == {
        "top": [(1, "b", 140), (2, "a", 100), (3, "c", 85)],
        "ranks": [(1, "b", 140), (2, "a", 100), (3, "c", 85), (4, "d", 70), (5, "e", 60)],
        "total": 5,
        "users": [(1, "b", 140), (2, "a", 100), (3, "c", 85)],
    }
    mine = api.get(f"{base}/b").json()
    assert (mine["rank"], mine["score"], mine["total"]) == (1, 140, 5)
    assert_top_consistent(board)
    assert_index_counters_agree(board)
    # And the index follows b again.
    submit(board, ("b", 1))
    settled(board, {"a": 100, "b": 141, "c": 85, "d": 70, "e": 60}, ["a", "b", "c", "d", "e"])


@pytest.mark.pipeline
def test_it_hides_and_unhides_under_concurrent_writes(worker, make_board, api, admin_key):
    board = make_board(top_n=3, min_points=-50)
    users = ["cheat", "u1", "u2", "u3", "u4", "u5"]
    expected = dict.fromkeys(users, 0)
    rng = random.Random(10)
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                batch = [(user, rng.randint(-50, 100) + (60 if user == "cheat" else 0)) for user in users]
                submit(board, *batch)
                for user, points in batch:
                    expected[user] += points
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for hidden in [True, False, True, False, True]:
            time.sleep(0.3)
            hide(api, admin_key, board, "cheat", hidden=hidden)
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join()
    assert not failures

    # Drained: exact totals in the database, the cheat (on top by far) in no read.
    settled(board, expected, users[1:])
    assert db_scores(board)["cheat"] == max(expected.values())
    seen = reads(api, board, ",".join(users))
    assert "cheat" not in {u for part in ("top", "ranks", "users") for _, u, _ in seen[part]}
    assert seen["total"] == 5
    assert api.get(f"/api/v1/leaderboards/{board.slug}/users/cheat").status_code == 404

    hide(api, admin_key, board, "cheat", hidden=False)
    seen = reads(api, board, ",".join(users))
    assert seen["top"][0] == (1, "cheat", expected["cheat"])
    assert seen["total"] == 6
    settled(board, expected, users)


def test_it_leaves_hidden_users_out_of_the_database_reads(transactional_db, make_board, api):
    """The fallbacks used while Redis rebuilds, the top-N repair and the index checks."""
    board = make_board(top_n=3)
    period = board.current_period()
    for user, score in [("a", 50), ("b", 40), ("c", 30), ("d", 20)]:
        make_score(board, user, score)
    user_hide(leaderboard=board, user_id="a")
    assert [r.user_id for r in db_top_rows(leaderboard=board, period=period, limit=3)] == ["b", "c", "d"]
    assert _user_rank_from_database(leaderboard=board, period=period, user_id="a", around=1) is None
    view = _user_rank_from_database(leaderboard=board, period=period, user_id="c", around=1)
    assert (view.rank, view.total, [e["user_id"] for e in view.around]) == (2, 3, ["b", "c", "d"])
    ranks = _rank_range_from_database(leaderboard=board, period=period, start=1, count=10)
    assert (ranks.total, [e["user_id"] for e in ranks.entries]) == (3, ["b", "c", "d"])
    assert _ranks_of_from_database(leaderboard=board, period=period, user_ids=["a", "c"]) == [
        {"rank": 2, "user_id": "c", "score": 30, "display_name": None, "metadata": None}
    ]
    assert index_upkeep.db_counters(leaderboard=board, period=period)[0] == 3
    rows = index_upkeep.rows_after(leaderboard=board, period=period, cursor="", limit=10)
    assert [r.user_id for r in rows] == ["b", "c", "d"]

    # Redis lost the index (and the hidden set): the served reads come from the database.
    client = cache.redis_client()
    cache.index_reset(client, board.id, period)
    client.delete(redis_keys.hidden_key(board.id))
    for strategy in ["merge_tree", "sorted_set"]:
        top = leaderboard_top_json(leaderboard=board, period=period, limit=3, strategy=strategy)
        assert b'"a"' not in b"".join(top.entries)
    assert api.get(f"/api/v1/leaderboards/{board.slug}/users/a").status_code == 404
    assert api.get(f"/api/v1/leaderboards/{board.slug}/ranks").json()["total"] == 3
    # A rebuild restores the hidden set first (this claim, or a worker's that answered
    # the reads' repair requests).
    index_upkeep.index_build_claim(leaderboard=board, period=period)
    assert cache.hidden_members(client, board.id) == {"a"}
    celery_app.control.purge()  # the repair requests of those reads and the rebuild's chunk


def test_it_skips_hidden_users_in_index_updates_and_rebuild_chunks(transactional_db, make_board):
    from tasks.messages import Row

    board = make_board()
    period = board.current_period()
    client = cache.redis_client()
    cache.index_apply(client, board.id, period, [Row("a", 5, 1, 1), Row("b", 3, 1, 1)], True)
    cache.index_remove_user(client, board.id, period, "a")
    assert cache.index_counters(client, board.id, period) == (1, 1)
    cache.index_apply(client, board.id, period, [Row("a", 9, 2, 2), Row("b", 4, 2, 2)], True)
    assert cache.index_held(client, board.id, period, ["a", "b"])[0] == ""
    assert cache.index_counters(client, board.id, period) == (1, 2)
    cache.index_build_load(client, board.id, period, [Row("a", 9, 2, 2)], True)
    assert client.zcard(redis_keys.shadow_index_key(board.id, period)) == 0


@pytest.fixture
def write_key(db) -> str:
    return ApiKey.generate(name="writer")[1]


@pytest.mark.parametrize("method", ["post", "delete"])
def test_it_refuses_hiding_without_an_admin_key(api, make_board, write_key, method):
    board = make_board()
    url = f"/api/v1/leaderboards/{board.slug}/users/a/hide"
    response = getattr(api, method)(url)
    assert response.status_code == 401 and response.json()["detail"]
    response = getattr(bearer(api, write_key), method)(url)
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    assert not HiddenUser.objects.exists()


@pytest.mark.parametrize(
    ("slug", "user_id", "body", "status", "words"),
    [
        ("no-such-board", "a", None, 404, "no-such-board"),
        (None, "a@b", None, 400, "1-64"),
        (None, "x" * 65, None, 400, "no more than 64"),
        (None, "a", {"reason": "cheat"}, 400, "Unknown field"),
    ],
)
def test_it_refuses_a_bad_hide_request(api, make_board, admin_key, slug, user_id, body, status, words):
    board = make_board()
    url = f"/api/v1/leaderboards/{slug or board.slug}/users/{user_id}/hide"
    response = bearer(api, admin_key).post(url, body, format="json")
    assert response.status_code == status
    assert words in str(response.json())
    assert not HiddenUser.objects.exists()


def test_it_publishes_hiding_in_the_schema(api):
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]
    hide_path = paths["/api/v1/leaderboards/{slug}/users/{user_id}/hide"]
    assert {"post", "delete"} <= set(hide_path)
    assert {"200", "400", "401", "403", "404"} <= set(hide_path["post"]["responses"])
    assert {"202", "400", "401", "403"} <= set(paths["/api/v1/users/{user_id}"]["delete"]["responses"])


def test_it_lists_hides_and_unhides_in_the_admin(transactional_db, admin_client, make_board):
    board = make_board(slug="admin-hides")
    other = make_board(slug="other-board")
    make_score(board, "cheater", 99)
    make_score(board, "honest", 5)
    cache.index_apply(
        cache.redis_client(),
        board.id,
        board.current_period(),
        index_upkeep.rows_after(leaderboard=board, period="all", cursor="", limit=10),
        True,
    )
    response = admin_client.post(
        reverse("admin:rankings_hiddenuser_add"), {"leaderboard": board.id, "user_id": "cheater"}
    )
    assert response.status_code == 302, response.content
    assert cache.hidden_members(cache.redis_client(), board.id) == {"cheater"}
    assert cache.index_held(cache.redis_client(), board.id, "all", ["cheater"]) == [""]
    user_hide(leaderboard=other, user_id="someone")

    listed = admin_client.get(reverse("admin:rankings_hiddenuser_changelist"), {"leaderboard__id__exact": board.id})
    assert [h.user_id for h in listed.context["cl"].result_list] == ["cheater"]
    found = admin_client.get(reverse("admin:rankings_hiddenuser_changelist"), {"q": "someone"})
    assert [h.user_id for h in found.context["cl"].result_list] == ["someone"]

    hidden = HiddenUser.objects.get(leaderboard=board, user_id="cheater")
    response = admin_client.post(reverse("admin:rankings_hiddenuser_delete", args=[hidden.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not HiddenUser.objects.filter(leaderboard=board).exists()
    assert cache.hidden_members(cache.redis_client(), board.id) == set()
    assert cache.index_held(cache.redis_client(), board.id, "all", ["cheater"])[0].startswith("1|")
