"""Rank order, top-K cuts and merges, index members: pure functions, no service."""

from rankings.ordering import index_member, merge_top_k, parse_member, rank_key, top_k
from tasks.messages import Row


def test_it_orders_by_score_then_earlier_reach_then_user_id():
    rows = [Row("b", 5, 10, 1), Row("a", 5, 10, 1), Row("c", 5, 9, 1), Row("d", 7, 99, 1)]
    assert [r.user_id for r in sorted(rows, key=lambda r: rank_key(r, True))] == ["d", "c", "a", "b"]
    assert [r.user_id for r in sorted(rows, key=lambda r: rank_key(r, False))] == ["c", "a", "b", "d"]


def test_top_k_keeps_the_newest_version_of_each_user():
    rows = [Row("a", 9, 1, 1), Row("a", 3, 2, 2), Row("b", 5, 1, 1)]
    assert top_k(rows, 2, True) == [Row("b", 5, 1, 1), Row("a", 3, 2, 2)]


def test_merge_top_k_says_when_a_user_fell_between_partials():
    rose = [Row("a", 3, 1, 1), Row("a", 9, 2, 2)]
    assert merge_top_k(rose, 5, True) == ([Row("a", 9, 2, 2)], False)
    fell = [Row("a", 9, 1, 1), Row("a", 3, 2, 2)]
    assert merge_top_k(fell, 5, True) == ([Row("a", 3, 2, 2)], True)


def test_index_members_sort_as_bytes_in_rank_order_and_parse_back():
    rows = [Row("u1", -5, 3, 1), Row("u2", 2**62, 1, 1), Row("u3", 0, 2, 1), Row("u0", 0, 2, 1)]
    for desc in (True, False):
        members = [index_member(r, desc) for r in rows]
        by_bytes = [parse_member(m, desc)[0] for m in sorted(members)]
        assert by_bytes == [r.user_id for r in sorted(rows, key=lambda r: rank_key(r, desc))]
        assert [parse_member(m, desc) for m in members] == [(r.user_id, r.score, r.reached_us) for r in rows]
