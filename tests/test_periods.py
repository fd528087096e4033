"""Periodic boards (the period math: tests/unit/test_period_math.py): the board fields,
``GET …/periods``, ``?period=`` on the four reads, and the rollover through the real pipeline (both strategies) with its
close and purge.

The clock: the tests replace ``rankings.periods.clock_us`` (what every read takes as now)
and ``scores.services.now_micros`` (the web tier's accepted-time stamp) in this process,
where the API runs; events then take the real path (validation, stamp, publisher,
RabbitMQ, a real ingest worker), stamped at the instants a test chooses. The workers
need no clock of their own: an event's period follows from its accepted time alone, and
the upkeep task is sent the instant it runs at.
"""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django_redis import get_redis_connection

from leaderboard_project.celery import app as celery_app
from rankings import periods
from rankings.admin import LeaderboardAdmin
from rankings.models import Leaderboard, TopN
from rankings.period_upkeep import PERIOD_UPKEEP_TASK
from rankings.periods import (
    PeriodRule,
    period_at,
)
from rankings.selectors import db_top_rows
from scores import services as score_services
from scores.admission import backlog_in_flight
from scores.models import Score
from tests.checks import eventually, queued_messages
from tests.conftest import Workers, bearer
from tests.unit.test_period_math import BERLIN, MS, SECOND, local_midnight

LIST = "/api/v1/leaderboards/"


def days_ahead(days: int) -> date:
    """A day after the real today: the boards the tests make exist before its periods."""
    return datetime.now(ZoneInfo(BERLIN)).date() + timedelta(days=days)


# --- the board fields ----------------------------------------------------------------------


def test_it_creates_a_resetting_board_and_shows_its_period_fields(api, admin_key):
    body = {"slug": "weekly", "name": "Weekly", "reset": "weekly", "reset_timezone": BERLIN, "keep_periods": 4}
    response = bearer(api, admin_key).post(LIST, body, format="json")
    assert response.status_code == 201, response.content
    assert {k: response.json()[k] for k in ("reset", "reset_timezone", "keep_periods")} == {
        "reset": "weekly",
        "reset_timezone": BERLIN,
        "keep_periods": 4,
    }
    board = Leaderboard.objects.get(slug="weekly")
    assert board.current_period() == period_at(PeriodRule("weekly", BERLIN), periods.clock_us()).key
    # Its top-N row is the current period's.
    assert TopN.objects.filter(leaderboard=board, period=board.current_period()).exists()
    plain = bearer(api, admin_key).post(LIST, {"slug": "plain", "name": "Plain"}, format="json").json()
    assert (plain["reset"], plain["reset_timezone"], plain["keep_periods"]) == ("never", "UTC", 12)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"reset": "hourly"}, "reset", "not a valid choice"),
        ({"reset_timezone": "Mars/Olympus"}, "reset_timezone", "not an IANA time zone"),
        ({"reset_timezone": "../../etc/passwd"}, "reset_timezone", "not an IANA time zone"),
        ({"reset_timezone": ""}, "reset_timezone", "blank"),
        ({"keep_periods": 0}, "keep_periods", "greater than or equal to 1"),
        ({"keep_periods": 1001}, "keep_periods", "less than or equal to 1000"),
        ({"rest": "daily"}, "rest", "Unknown field"),
    ],
)
def test_it_refuses_bad_period_fields_naming_them(api, admin_key, fields, field, words):
    response = bearer(api, admin_key).post(LIST, {"slug": "bad", "name": "Bad", **fields}, format="json")
    assert response.status_code == 400, response.content
    assert words in response.json()[field][0]
    assert not Leaderboard.objects.filter(slug="bad").exists()


def test_it_fixes_the_period_fields_once_the_board_exists(rf, make_board):
    board = make_board(reset="daily")
    admin = LeaderboardAdmin(Leaderboard, None)
    assert {"reset", "reset_timezone", "keep_periods"} <= set(admin.get_readonly_fields(rf.get("/"), board))
    assert "reset" not in admin.get_readonly_fields(rf.get("/"), None)  # set when adding one


def test_it_publishes_periods_in_the_schema(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/leaderboards/{slug}/periods" in schema["paths"]
    for tail in ["top", "users/{user_id}", "ranks", "users"]:
        parameters = schema["paths"][f"/api/v1/leaderboards/{{slug}}/{tail}"]["get"]["parameters"]
        assert "period" in {p["name"] for p in parameters}, tail
    board_fields = schema["components"]["schemas"]["LeaderboardInputRequest"]["properties"]
    assert {"reset", "reset_timezone", "keep_periods"} <= set(board_fields)


# --- reads of periods (no worker: rows written straight to the table) ------------------------


@pytest.fixture
def clock(monkeypatch):
    """Now, as this process's reads and its web tier's stamp see it."""

    class Clock:
        now_us = periods.clock_us()

        def set(self, instant_us: int) -> None:
            self.now_us = instant_us

    moments = Clock()
    monkeypatch.setattr(periods, "clock_us", lambda: moments.now_us)
    monkeypatch.setattr(score_services, "now_micros", lambda: moments.now_us)
    return moments


@pytest.fixture
def no_worker(celery_workers: Workers):
    """A worker left running would answer the repair requests of these cold reads."""
    celery_workers.stop()
    yield
    celery_app.control.purge()  # the repair requests of these reads are for rolled-back boards


def put_score(board: Leaderboard, period: str, user_id: str, score: int, reached_us: int) -> None:
    Score.objects.create(
        user_id=user_id,
        leaderboard=board,
        period=period,
        score=score,
        sort_key=board.sort_key_of(score),
        reached_at=datetime.fromtimestamp(reached_us / SECOND, tz=ZoneInfo("UTC")),
    )


def test_it_lists_the_current_and_kept_periods_newest_first(api, make_board, clock, no_worker):
    board = make_board(reset="daily", reset_timezone=BERLIN, keep_periods=3)
    first = days_ahead(3)
    clock.set(local_midnight(first + timedelta(days=2)) + 3600 * SECOND)
    TopN.objects.create(leaderboard=board, period=first.isoformat(), closed=True)
    response = api.get(f"/api/v1/leaderboards/{board.slug}/periods")
    assert response.status_code == 200
    body = response.json()
    days = [first + timedelta(days=n) for n in (2, 1, 0, -1)]
    assert body["leaderboard"] == board.slug
    assert body["current"] == days[0].isoformat()
    assert [p["key"] for p in body["periods"]] == [d.isoformat() for d in days]
    assert [p["closed"] for p in body["periods"]] == [False, False, True, False]
    for period, day in zip(body["periods"], days, strict=True):
        starts = datetime.fromisoformat(period["starts_at"])
        assert int(starts.timestamp()) * SECOND == local_midnight(day)
        assert datetime.fromisoformat(period["ends_at"]) > starts


def test_it_lists_the_one_period_of_a_board_that_never_resets(api, make_board, no_worker):
    board = make_board()
    body = api.get(f"/api/v1/leaderboards/{board.slug}/periods").json()
    assert body == {
        "leaderboard": board.slug,
        "current": "all",
        "periods": [{"key": "all", "starts_at": None, "ends_at": None, "closed": False}],
    }
    assert api.get("/api/v1/leaderboards/no-such-board/periods").status_code == 404


READS = ["top", "users/a", "ranks", "users?ids=a,b"]


@pytest.mark.parametrize("read", READS)
@pytest.mark.parametrize(
    ("key", "status", "words"),
    [
        ("2026-13-01", 400, "names no real daily period"),
        ("yesterday", 400, "not a period key"),
        ("2026-W48", 404, "resets daily"),
        ("all", 404, "resets daily"),
        ("future", 404, "has not started"),
        ("too-old", 404, "older than the 2 past periods"),
    ],
)
def test_it_refuses_a_period_the_board_does_not_keep(api, make_board, clock, no_worker, read, key, status, words):
    board = make_board(reset="daily", reset_timezone=BERLIN, keep_periods=2)
    today = days_ahead(5)
    clock.set(local_midnight(today) + 10 * SECOND)
    named = {"future": today + timedelta(days=1), "too-old": today - timedelta(days=3)}
    key = named[key].isoformat() if key in named else key
    joiner = "&" if "?" in read else "?"
    response = api.get(f"/api/v1/leaderboards/{board.slug}/{read}{joiner}period={key}")
    assert response.status_code == status, response.content
    answer = response.json()
    assert words in (answer["period"][0] if status == 400 else answer["detail"])


def test_it_reads_each_kept_period_on_all_four_reads(api, make_board, clock, no_worker):
    board = make_board(reset="daily", reset_timezone=BERLIN, keep_periods=2, top_n=5)
    today = days_ahead(5)
    yesterday = today - timedelta(days=1)
    clock.set(local_midnight(today) + 10 * SECOND)
    old, new = yesterday.isoformat(), today.isoformat()
    at = local_midnight(today) - SECOND
    for user, score in [("a", 30), ("b", 20), ("c", 10)]:
        put_score(board, old, user, score, at)
    put_score(board, new, "b", 99, at + 2 * SECOND)
    url = f"/api/v1/leaderboards/{board.slug}"

    top_old = api.get(f"{url}/top", {"period": old})
    assert top_old.status_code == 200
    assert [(e["user_id"], e["score"]) for e in top_old.json()["entries"]] == [("a", 30), ("b", 20), ("c", 10)]
    top_new = api.get(f"{url}/top")
    assert [(e["user_id"], e["score"]) for e in top_new.json()["entries"]] == [("b", 99)]
    assert api.get(f"{url}/top", {"period": new}).json()["entries"] == top_new.json()["entries"]
    assert top_old["ETag"] != top_new["ETag"]  # the period is part of the tag

    user = api.get(f"{url}/users/b", {"period": old, "around": 1}).json()
    assert (user["rank"], user["score"], user["total"]) == (2, 20, 3)
    assert [e["user_id"] for e in user["around"]] == ["a", "b", "c"]
    assert api.get(f"{url}/users/b").json()["rank"] == 1
    assert api.get(f"{url}/users/a").status_code == 404  # no score in today's period

    ranks = api.get(f"{url}/ranks", {"period": old, "start": 2, "count": 5}).json()
    assert ranks == {
        "leaderboard": board.slug,
        "period": old,
        "total": 3,
        "entries": [
            {"rank": 2, "user_id": "b", "score": 20, "display_name": None, "metadata": None},
            {"rank": 3, "user_id": "c", "score": 10, "display_name": None, "metadata": None},
        ],
    }
    assert api.get(f"{url}/ranks").json()["period"] == new
    friends = api.get(f"{url}/users", {"ids": "c,a,z", "period": old}).json()
    assert friends["period"] == old
    assert [(e["rank"], e["user_id"]) for e in friends["entries"]] == [(1, "a"), (3, "c")]


# --- the rollover through the real pipeline ------------------------------------------------


def _post(api, slug: str, events: list[dict]) -> None:
    response = api.post(f"/api/v1/leaderboards/{slug}/scores", {"events": events}, format="json")
    assert response.status_code == 202, response.content


def _pairs(entries: list[dict]) -> list[tuple[str, int]]:
    return [(e["user_id"], e["score"]) for e in entries]


def _db_top(board: Leaderboard, period: str) -> list[tuple[str, int]]:
    return [(r.user_id, r.score) for r in db_top_rows(leaderboard=board, period=period, limit=board.top_n)]


def _db_rows(board: Leaderboard, period: str) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, score FROM scores_score WHERE leaderboard_id = %s AND period = %s", [board.id, period]
        )
        return dict(cursor.fetchall())


def _redis_keys_of(board: Leaderboard, period: str) -> list[bytes]:
    from django.conf import settings

    pattern = f"{settings.LEADERBOARD_REDIS_PREFIX}:{{{board.id}:{period}}}*"
    return list(get_redis_connection("default").scan_iter(match=pattern))


def _upkeep(now_us: int) -> dict[str, list[str]]:
    """The beat task, run by the real worker at the instant the test chooses."""
    task = celery_app.send_task(PERIOD_UPKEEP_TASK, kwargs={"now_us": now_us}, ignore_result=False)
    return task.get(timeout=60)


@pytest.mark.pipeline
def test_it_rolls_over_closes_and_purges_through_the_pipeline(worker, strategy, api, admin_key, clock):
    created = bearer(api, admin_key).post(
        LIST,
        {
            "slug": f"daily-{strategy.replace('_', '-')}",
            "name": "Daily",
            "reset": "daily",
            "reset_timezone": BERLIN,
            "keep_periods": 1,
            "top_n": 3,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    board = Leaderboard.objects.get(slug=created.json()["slug"])
    boundary_day = days_ahead(3)
    boundary = local_midnight(boundary_day)
    old, new = (boundary_day - timedelta(days=1)).isoformat(), boundary_day.isoformat()
    url = f"/api/v1/leaderboards/{board.slug}"

    # Accepted at 23:59:59.999 Berlin time, and at midnight: two periods.
    clock.set(boundary - MS)
    _post(api, board.slug, [{"user_id": u, "points": p} for u, p in [("a", 50), ("b", 40), ("c", 30), ("d", 20)]])
    clock.set(boundary)
    _post(api, board.slug, [{"user_id": u, "points": p} for u, p in [("a", 5), ("d", 100), ("e", 7)]])
    clock.set(boundary + SECOND)

    expected_old = {"a": 50, "b": 40, "c": 30, "d": 20}
    expected_new = {"a": 5, "d": 100, "e": 7}

    def both_periods_exact() -> None:
        assert queued_messages() == 0
        assert _db_rows(board, old) == expected_old
        assert _db_rows(board, new) == expected_new
        for period, top in [(old, [("a", 50), ("b", 40), ("c", 30)]), (new, [("d", 100), ("e", 7), ("a", 5)])]:
            assert _db_top(board, period) == top
            assert _pairs(api.get(f"{url}/top", {"period": period, "limit": 3}).json()["entries"]) == top
        assert _pairs(api.get(f"{url}/top", {"limit": 3}).json()["entries"]) == [("d", 100), ("e", 7), ("a", 5)]
        user = api.get(f"{url}/users/d", {"period": old}).json()
        assert (user["rank"], user["score"], user["total"]) == (4, 20, 4)
        user = api.get(f"{url}/users/d").json()
        assert (user["rank"], user["score"], user["total"]) == (1, 100, 3)
        ranks = api.get(f"{url}/ranks", {"period": old, "start": 3, "count": 2}).json()
        assert _pairs(ranks["entries"]) == [("c", 30), ("d", 20)] and ranks["total"] == 4
        friends = api.get(f"{url}/users", {"ids": "e,b,d", "period": old}).json()["entries"]
        assert [(e["rank"], e["user_id"]) for e in friends] == [(2, "b"), (4, "d")]

    eventually(both_periods_exact, timeout=60)
    listed = api.get(f"{url}/periods").json()
    assert listed["current"] == new
    assert [(p["key"], p["closed"]) for p in listed["periods"]] == [(new, False), (old, False)]

    # Beat, a grace after midnight and with nothing in flight, closes the old day.
    eventually(lambda: _assert_nothing_in_flight(), timeout=30)
    grace = 61 * SECOND
    report = _upkeep(boundary + grace)
    assert f"{board.slug}/{old}" in report["closed"]
    assert f"{board.slug}/{(boundary_day + timedelta(days=1)).isoformat()}" in report["opened"]
    final = TopN.objects.get(leaderboard=board, period=old)
    assert final.closed
    assert [(row[0], row[1]) for row in final.entries] == [("a", 50), ("b", 40), ("c", 30)]
    clock.set(boundary + grace)
    assert [(p["key"], p["closed"]) for p in api.get(f"{url}/periods").json()["periods"]] == [(new, False), (old, True)]
    assert _pairs(api.get(f"{url}/top", {"period": old}).json()["entries"]) == [("a", 50), ("b", 40), ("c", 30)]
    assert api.get(f"{url}/users/d", {"period": old}).json()["rank"] == 4

    # A day later (keep_periods=1) the old day is purged; the next one is kept, not yet
    # closed (its grace has not passed).
    later = boundary + 24 * 3600 * SECOND + SECOND
    clock.set(later)
    report = _upkeep(later)
    assert f"{board.slug}/{old}" in report["purged"]
    assert f"{board.slug}/{new}" not in report["closed"]
    assert api.get(f"{url}/top", {"period": old}).status_code == 404
    assert api.get(f"{url}/users/a", {"period": old}).status_code == 404
    assert _db_rows(board, old) == {}
    assert not TopN.objects.filter(leaderboard=board, period=old).exists()
    assert _redis_keys_of(board, old) == []
    assert _db_rows(board, new) == expected_new
    assert _pairs(api.get(f"{url}/top", {"period": new}).json()["entries"]) == [("d", 100), ("e", 7), ("a", 5)]
    assert api.get(f"{url}/top").json()["entries"] == []  # the new day starts empty: nothing copied
    assert [p["key"] for p in api.get(f"{url}/periods").json()["periods"]] == [
        (boundary_day + timedelta(days=1)).isoformat(),
        new,
    ]


def _assert_nothing_in_flight() -> None:
    # The web process's admission monitor levels the counters once the queues are idle.
    assert backlog_in_flight() <= 0
