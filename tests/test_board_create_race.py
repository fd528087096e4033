"""Two clients create the same slug at once: one 201, one 400 naming the slug, never a 500.

Both requests must pass validation (the slug is free when each looks) before either
inserts, so the database's unique constraint is what refuses the second. A lock taken
from a third connection holds both inserts until both requests are waiting on it.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from django.db import connection

from rankings.models import Leaderboard, TopN


def waiting_inserts(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO \"rankings_leaderboard\"%%'"
        ).fetchone()[0]


def test_it_answers_400_to_the_loser_of_a_slug_race(live_server, admin_key):
    params = connection.get_connection_params()
    dsn = psycopg.conninfo.make_conninfo(
        dbname=params["dbname"], user=params.get("user"), host=params.get("host"), port=params.get("port")
    )
    url = f"{live_server.url}/api/v1/leaderboards/"
    headers = {"Authorization": f"Bearer {admin_key}"}

    def create(name: str) -> httpx.Response:
        return httpx.post(url, json={"slug": "raced", "name": name}, headers=headers, timeout=30)

    with psycopg.connect(dsn) as blocker, ThreadPoolExecutor(2) as pool:
        # SHARE lets both requests read (the slug looks free) but holds both INSERTs.
        blocker.execute("LOCK TABLE rankings_leaderboard IN SHARE MODE")
        futures = [pool.submit(create, "First"), pool.submit(create, "Second")]
        deadline = time.monotonic() + 20
        while waiting_inserts(dsn) < 2:
            assert time.monotonic() < deadline, "both requests should be waiting on their INSERT"
            time.sleep(0.05)
        blocker.commit()
        responses = sorted((f.result() for f in futures), key=lambda r: r.status_code)

    assert [r.status_code for r in responses] == [201, 400], [r.text for r in responses]
    assert "already exists" in str(responses[1].json()["slug"])
    assert "raced" in str(responses[1].json()["slug"])
    board = Leaderboard.objects.get(slug="raced")
    assert board.name == responses[0].json()["name"]
    assert TopN.objects.filter(leaderboard=board).count() == 1
