"""The rank index stays equal to the database: stale entries are found and repaired by the
reconcile, a lost index is rebuilt in resumable chunks, and the reconcile fans out per board."""

import io
import math

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from rankings import cache, index_upkeep, redis_keys
from rankings.models import Leaderboard
from rankings.services import (
    _sweep_next,
    board_reconcile,
    index_build_chunk_send,
    index_rebuild_start,
    reconcile_fanout,
)
from scores.models import Score
from scores.services import score_events_apply, score_events_submit
from tasks.messages import ScoreEvent
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores, eventually


def _settled(board: Leaderboard, expected: dict[str, int]) -> None:
    def check() -> None:
        assert db_scores(board) == expected
        assert_top_consistent(board)

    eventually(check)


def _index_exact(board: Leaderboard) -> None:
    """The index is complete and every user's rank, neighbours and total agree with the database."""
    client = cache.redis_client()
    period = board.current_period()
    assert cache.index_is_ready(client, board.id, period)
    users = sorted(db_scores(board))
    assert cache.index_counters(client, board.id, period)[0] == len(users)
    assert_ranks_consistent(board, users)
    assert_top_consistent(board)


def _seed(board: Leaderboard, users: int) -> dict[str, int]:
    events = [{"user_id": f"u{n:03d}", "points": 10 + n * 7 % 101} for n in range(users)]
    score_events_submit(leaderboard=board, events=events)
    expected = {e["user_id"]: e["points"] for e in events}
    _settled(board, expected)
    return expected


# --- item 1: a stale index is noticed and repaired ------------------------------------


@pytest.mark.pipeline
def test_it_repairs_a_user_removed_from_the_index_behind_its_back(worker, make_board):
    board = make_board(top_n=5)
    _seed(board, 40)
    client = cache.redis_client()
    period = board.current_period()
    held = client.hget(redis_keys.versions_key(board.id, period), "u010").decode()
    client.hdel(redis_keys.versions_key(board.id, period), "u010")
    client.zrem(redis_keys.index_key(board.id, period), held.split("|", 1)[1])
    assert cache.index_is_ready(client, board.id, period)  # the flag says nothing is wrong

    check = board_reconcile(leaderboard=board, period=period)

    assert check.repaired == 1
    _index_exact(board)


@pytest.mark.pipeline
def test_it_repairs_a_write_the_index_never_got(worker, make_board):
    board = make_board(top_n=3)
    _seed(board, 30)
    period = board.current_period()
    # The "lost Redis write": committed in the database, never handed to the index.
    score_events_apply(events=[ScoreEvent(board.id, "u007", 10_000, "lost", 1_900_000_000_000_000)])
    stale = cache.index_read_rank(cache.redis_client(), board.id, period, "u007", 0)
    assert stale is not None and stale[1] != 0  # not first in the index, first in the database

    check = board_reconcile(leaderboard=board, period=period)

    assert check.repaired == 1
    _index_exact(board)
    assert cache.index_read_rank(cache.redis_client(), board.id, period, "u007", 0)[1] == 0


@pytest.mark.pipeline
def test_it_rebuilds_when_the_counters_stay_apart_outside_the_checked_slice(worker, make_board, settings):
    settings.LEADERBOARD_INDEX_VERIFY_SLICE = 5  # the slice check sees only the first five
    board = make_board(top_n=3)
    expected = _seed(board, 30)
    score_events_submit(leaderboard=board, events=[{"user_id": "u020", "points": 1}])
    _settled(board, {**expected, "u020": expected["u020"] + 1})
    period = board.current_period()
    # A score deleted and made again (as an admin deletion would): version 1 again, while
    # the index holds a newer version, which it would keep for ever.
    row = Score.objects.get(leaderboard=board, user_id="u020")
    row.delete()
    Score.objects.create(
        user_id="u020",
        leaderboard=board,
        period=period,
        score=1,
        sort_key=board.sort_key_of(1),
        reached_at=timezone.now(),
    )

    first = board_reconcile(leaderboard=board, period=period)
    assert (first.repaired, first.counters_agree, first.rebuilding) == (0, None, False)
    second = board_reconcile(leaderboard=board, period=period)
    assert (second.counters_agree, second.rebuilding) == (False, True)

    eventually(lambda: _index_exact(board), timeout=60)
    assert cache.index_held(cache.redis_client(), board.id, period, ["u020"])[0].startswith("1|")


def test_it_refuses_to_delete_a_score_in_the_admin(admin_client, make_board):
    board = make_board()
    row = Score.objects.create(
        user_id="a", leaderboard=board, period=board.current_period(), score=5, sort_key=-5, reached_at=timezone.now()
    )
    response = admin_client.get(reverse("admin:scores_score_delete", args=[row.pk]))
    assert response.status_code == 403
    changelist = admin_client.get(reverse("admin:scores_score_changelist"))
    assert "delete_selected" not in changelist.content.decode()


# --- item 2: a resumable, chunked rebuild ---------------------------------------------


@pytest.mark.pipeline
def test_it_rebuilds_a_lost_index_in_chunks_on_the_workers(worker, make_board):
    board = make_board(top_n=5)
    expected = _seed(board, 120)
    client = cache.redis_client()
    period = board.current_period()
    cache.index_reset(client, board.id, period)

    # Seven rows per task: no single task could rebuild the board.
    assert index_rebuild_start(leaderboard=board, period=period, chunk_rows=7)
    # Updates while it runs reach the rebuilt index too (mirrored into the shadow).
    more = [{"user_id": f"u{n:03d}", "points": 1000 + n} for n in range(0, 120, 9)]
    score_events_submit(leaderboard=board, events=more)
    for event in more:
        expected[event["user_id"]] += event["points"]

    _settled(board, expected)
    eventually(lambda: _index_exact(board), timeout=60)
    last = cache.index_build_last(client, board.id, period)
    # Users the updates moved above the cursor were mirrored, not loaded: fewer than 120 rows.
    assert int(last["chunks"]) >= math.ceil(int(last["rows"]) / 7) >= 10
    assert cache.index_build_state(client, board.id, period) is None


@pytest.mark.pipeline
def test_it_resumes_a_dead_rebuild_from_its_cursor(worker, make_board):
    board = make_board(top_n=5)
    _seed(board, 50)
    client = cache.redis_client()
    period = board.current_period()
    cache.index_reset(client, board.id, period)
    dead = index_upkeep.index_build_claim(leaderboard=board, period=period, chunk_rows=10)
    assert index_upkeep.index_build_run(leaderboard=board, period=period, token=dead, budget_seconds=30) == "more"
    # The claim is short (refreshed per chunk), not 900 s; the worker "dies" and it expires.
    ttl = client.ttl(redis_keys.building_key(board.id, period))
    assert 0 < ttl <= index_upkeep.build_claim_ttl() <= 150
    client.delete(redis_keys.building_key(board.id, period))

    token = index_upkeep.index_build_claim(leaderboard=board, period=period)
    state = cache.index_build_state(client, board.id, period)
    assert (state["done"], state["chunks"]) == ("10", "1")  # resumed, not restarted
    assert index_upkeep.index_build_run(leaderboard=board, period=period, token=dead, budget_seconds=30) == "lost"
    index_build_chunk_send(leaderboard_id=board.id, period=period, token=token)

    eventually(lambda: _index_exact(board), timeout=60)
    assert cache.index_build_last(client, board.id, period)["rows"] == "50"


def test_it_shows_a_rebuild_s_progress_in_the_admin(admin_client, make_board):
    board = make_board(slug="progress")
    for n in range(30):
        Score.objects.create(
            user_id=f"p{n:02d}",
            leaderboard=board,
            period=board.current_period(),
            score=n,
            sort_key=-n,
            reached_at=timezone.now(),
        )
    period = board.current_period()
    cache.index_reset(cache.redis_client(), board.id, period)
    token = index_upkeep.index_build_claim(leaderboard=board, period=period, chunk_rows=10)
    index_upkeep.index_build_run(leaderboard=board, period=period, token=token, budget_seconds=30)
    page = admin_client.get(reverse("admin:rankings_leaderboard_changelist")).content.decode()
    assert "rebuilding: 10 of ~30 rows (33%)" in page


def test_it_rebuilds_from_the_command_with_a_progress_bar(make_board):
    board = make_board(slug="cmd")
    for n in range(25):
        Score.objects.create(
            user_id=f"c{n:02d}",
            leaderboard=board,
            period=board.current_period(),
            score=n,
            sort_key=-n,
            reached_at=timezone.now(),
        )
    cache.index_reset(cache.redis_client(), board.id, board.current_period())
    out, err = io.StringIO(), io.StringIO()
    call_command("rebuild_index", "--leaderboard", "cmd", stdout=out, stderr=err)
    assert "cmd: rank index rebuilt (25 rows)" in out.getvalue()
    assert "25/25" in err.getvalue()  # tqdm's bar
    view = cache.index_read_rank(cache.redis_client(), board.id, board.current_period(), "c24", 0)
    assert view[:2] == [25, 0]


# --- item 3: the reconcile fans out to the boards that changed ------------------------


@pytest.mark.pipeline
def test_it_reconciles_only_the_boards_that_changed(worker, make_board, settings):
    settings.LEADERBOARD_RECONCILE_SWEEP_BOARDS = 0
    boards = [make_board(top_n=3) for _ in range(15)]
    client = cache.redis_client()
    client.delete(redis_keys.touched_key())
    changed = boards[2::6]
    for board in changed:
        score_events_submit(leaderboard=board, events=[{"user_id": "x", "points": 5}])
    for board in changed:
        _settled(board, {"x": 5})
    client.delete(redis_keys.reconciled_key())

    assert reconcile_fanout() == len(changed)

    wanted = {f"{b.id}|{b.current_period()}" for b in changed}

    def reconciled() -> None:
        assert {m.decode() for m in client.zrange(redis_keys.reconciled_key(), 0, -1)} == wanted

    eventually(reconciled, timeout=60)
    assert reconcile_fanout() == 0  # nothing changed since


def test_it_sweeps_every_board_a_few_at_a_time(make_board, settings):
    settings.LEADERBOARD_RECONCILE_SWEEP_BOARDS = 5
    boards = [make_board() for _ in range(12)]
    client = cache.redis_client()
    client.delete(redis_keys.touched_key(), redis_keys.reconcile_sweep_cursor_key())
    seen = [_sweep_next(client, 5) for _ in range(4)]
    assert [len(batch) for batch in seen] == [5, 5, 2, 5]
    assert set().union(*seen[:3]) == {(b.id, b.current_period()) for b in boards}
