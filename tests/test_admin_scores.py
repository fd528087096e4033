"""The Score admin list at scale: every query it runs is an index scan, never a Seq Scan
of scores_score (the plan is asserted; the page time is only printed)."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

ROWS = 120_000


@pytest.fixture
def big_scores(make_board):
    boards = [make_board(slug="big-a"), make_board(slug="big-b")]
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO scores_score (user_id, leaderboard_id, period, score, sort_key, reached_at, version)
               SELECT 'user-' || n, CASE WHEN n %% 2 = 0 THEN %s ELSE %s END, 'all', n, -n, now(), 1
               FROM generate_series(1, %s) n""",
            [boards[0].id, boards[1].id, ROWS],
        )
        cursor.execute("ANALYZE scores_score")
    return boards


def scan_plans(queries: list[dict]) -> list[str]:
    plans = []
    with connection.cursor() as cursor:
        for query in queries:
            if "scores_score" in query["sql"] and query["sql"].lstrip().upper().startswith("SELECT"):
                cursor.execute("EXPLAIN " + query["sql"])
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


@pytest.mark.parametrize(
    "query",
    [{}, {"q": "user-77777"}, {"p": "3"}, {"leaderboard__id__exact": "big-a"}],
    ids=["list", "search", "page-4", "filter"],
)
def test_it_lists_and_searches_scores_by_index(admin_client, big_scores, query):
    if "leaderboard__id__exact" in query:
        query = {"leaderboard__id__exact": str(big_scores[0].id)}
    url = reverse("admin:scores_score_changelist")
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = admin_client.get(url, query)
        elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200
    if "q" in query:
        assert b"user-77777" in response.content
    print(f"\n[admin scores] {ROWS:,} rows, {query or 'first page'}: {elapsed_ms:.1f} ms, {len(queries)} queries")
    plans = scan_plans(queries.captured_queries)
    assert plans, "the page read no scores"
    for plan in plans:
        assert "Seq Scan on scores_score" not in plan, plan
    assert not any(
        "COUNT(*)" in q["sql"].upper() and "LIMIT" not in q["sql"].upper()
        for q in queries
        if "scores_score" in q["sql"] and "q" not in query
    ), "a full count of scores_score"
