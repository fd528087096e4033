"""The public pages, the activity counter and its endpoint, static files (in-process client)."""

import time

from pages import views as pages_views
from rankings.activity import activity_key, board_activity_record, board_activity_record_batch, board_activity_series
from rankings.cache import redis_client
from tasks.messages import ScoreEvent


def test_it_lists_the_boards(client, make_board):
    make_board(slug="chess", name="Chess blitz")
    make_board(slug="darts", name="Darts")
    response = client.get("/boards/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'href="/boards/chess/"' in page and "Chess blitz" in page and 'href="/boards/darts/"' in page


def test_it_pages_the_board_list_and_leaves_out_boards_being_deleted(client, make_board, monkeypatch):
    monkeypatch.setattr(pages_views, "BOARDS_PER_PAGE", 2)
    for slug in ("a1", "a2", "a3"):
        make_board(slug=slug)
    make_board(slug="a0", deleting=True)
    first = client.get("/boards/").content.decode()
    assert 'href="/boards/a1/"' in first and 'href="/boards/a2/"' in first and "/boards/a3/" not in first
    assert "/boards/a0/" not in first
    assert 'href="?after=a2"' in first
    second = client.get("/boards/?after=a2").content.decode()
    assert 'href="/boards/a3/"' in second and "/boards/a2/" not in second and "?after=" not in second


def test_it_serves_a_board_page_wired_to_the_api(client, make_board):
    make_board(slug="chess", name="Chess blitz", top_n=5)
    response = client.get("/boards/chess/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>Chess blitz</h1>" in page
    assert 'data-top-url="/api/v1/leaderboards/chess/top?limit=5"' in page
    assert 'data-activity-url="/api/v1/leaderboards/chess/activity"' in page
    assert "/static/pages/board.js" in page


def test_it_answers_404_for_an_unknown_board_page(client, db):
    assert client.get("/boards/nope/").status_code == 404


def test_it_counts_events_per_second_and_reads_the_last_minute(make_board):
    board = make_board()
    client = redis_client()
    now = 1_800_000_000.5
    board_activity_record(client, board.id, 3, now - 2)
    board_activity_record(client, board.id, 4, now - 2)
    board_activity_record(client, board.id, 5, now - 61)  # outside the window
    board_activity_record(client, board.id, 9, now)  # the current second: still filling, left out
    series = board_activity_series(client, board.id, now)
    assert len(series) == 60
    assert series[-1][0] == int(now) - 1 and series[0][0] == int(now) - 60
    assert dict(series)[int(now) - 2] == 7
    assert sum(count for _, count in series) == 7
    assert 0 < client.ttl(activity_key(board.id, int(now) - 2)) <= 120


def test_it_serves_the_activity_of_a_board(client, make_board):
    board = make_board(slug="busy")
    other = make_board(slug="quiet")
    now = time.time()
    events = [ScoreEvent(board.id, "u1", 1, "e1", 0), ScoreEvent(board.id, "u2", 1, "e2", 0)]
    board_activity_record_batch([*events, ScoreEvent(other.id, "u3", 1, "e3", 0)], now - 1)
    response = client.get("/api/v1/leaderboards/busy/activity")
    assert response.status_code == 200
    body = response.json()
    assert body["leaderboard"] == "busy" and body["window_seconds"] == 60
    assert sum(count for _, count in body["series"]) == 2
    assert body["events_per_second"] == 0.2  # 2 events over the last 10 s
    assert sum(count for _, count in client.get("/api/v1/leaderboards/quiet/activity").json()["series"]) == 1
    assert client.get("/api/v1/leaderboards/nope/activity").status_code == 404


def test_it_serves_admin_static_files(client):
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert b"body" in b"".join(response.streaming_content)
