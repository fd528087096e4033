"""reseed and rebuild_topn: bulk loads and rebuilds that leave every read true."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from rankings.models import Leaderboard, TopN
from tests.checks import assert_ranks_consistent, assert_top_consistent, db_scores

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "demo.json"


@pytest.fixture
def merge_tree(settings):
    settings.LEADERBOARD_RANKING_STRATEGY = "merge_tree"


def test_it_loads_synthetic_users_and_rebuilds_top_and_index(transactional_db, merge_tree):
    out = StringIO()
    call_command("reseed", "--leaderboard", "seeded", "--users", "3000", stdout=out)
    board = Leaderboard.objects.get(slug="seeded")
    assert len(db_scores(board)) == 3000
    assert "3000 users" in out.getvalue()
    assert_top_consistent(board)
    assert_ranks_consistent(board, ["user-00000000", "user-00001500", "user-00002999"])


def test_it_replaces_scores_from_a_fixture(transactional_db, merge_tree):
    call_command("reseed", "--leaderboard", "arena", "--users", "50", stdout=StringIO())
    call_command("reseed", "--leaderboard", "arena", "--fixture", str(FIXTURE), stdout=StringIO())
    board = Leaderboard.objects.get(slug="arena")
    scores = db_scores(board)
    assert scores["ada"] == 1520 and len(scores) == 12
    assert_top_consistent(board)
    assert_ranks_consistent(board, sorted(scores))


def test_it_refuses_a_missing_fixture(transactional_db):
    with pytest.raises(CommandError, match="no fixture"):
        call_command("reseed", "--leaderboard", "x", "--fixture", "/nonexistent.json")


def test_it_rebuilds_a_top_n_table_that_went_wrong(transactional_db, merge_tree):
    call_command("reseed", "--leaderboard", "fixme", "--users", "200", stdout=StringIO())
    board = Leaderboard.objects.get(slug="fixme")
    TopN.objects.filter(leaderboard=board).update(entries=[["nobody", 1, 0, 1]], version=10**6)
    out = StringIO()
    call_command("rebuild_topn", "--leaderboard", "fixme", stdout=out)
    assert "fixme: top-N" in out.getvalue()
    assert_top_consistent(board)


def test_it_refuses_to_rebuild_an_unknown_board(transactional_db):
    with pytest.raises(CommandError, match="no leaderboard"):
        call_command("rebuild_topn", "--leaderboard", "missing")
