"""Admission control on the real broker: past the backlog bound a score request answers 503
with Retry-After and enqueues nothing; once the workers drain the backlog it is 202 again."""

import time

import pytest
from rest_framework.test import APIClient

from rankings.cache import redis_client
from scores.admission import TenantShare, backlog_monitor, tenant_share
from scores.models import ApiKey
from tests.checks import db_scores, eventually, queued_messages
from tests.conftest import Workers, bearer

pytestmark = pytest.mark.pipeline


def test_it_sheds_load_past_the_backlog_bound_and_enqueues_nothing(
    celery_workers: Workers, transactional_db, settings, api, admin_key, make_board
):
    settings.LEADERBOARD_RANKING_STRATEGY = "merge_tree"
    settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = 200
    celery_workers.stop()  # nobody applies: the backlog grows
    board = make_board()
    client = bearer(api, admin_key)
    url = f"/api/v1/leaderboards/{board.slug}/scores"
    accepted = 0
    shed = None
    deadline = time.monotonic() + 30
    while shed is None and time.monotonic() < deadline:
        events = [{"user_id": f"u{n}", "points": 1, "event_id": f"b{accepted}-{n}"} for n in range(50)]
        response = client.post(url, {"events": events}, format="json")
        if response.status_code == 202:
            accepted += 1
            time.sleep(0.05)  # let the monitor read the growing queues
        else:
            shed = response
    assert shed is not None, f"never shed (backlog {backlog_monitor.latest}, {accepted} accepted)"
    assert shed.status_code == 503 and shed.headers["Retry-After"] == "1", shed.content
    assert "too many events wait to be applied" in shed.json()["detail"]

    before = queued_messages()
    refused = client.post(url, {"user_id": "late", "points": 5, "event_id": "late-1"}, format="json")
    assert refused.status_code == 503
    assert queued_messages() == before, "a shed request enqueued something"

    celery_workers.ensure("merge_tree")
    eventually(lambda: _assert_equal(queued_messages(), 0))
    # (Messages left on the test queues by earlier tests may have filled the backlog first.)
    expected = {f"u{n}": accepted for n in range(50)} if accepted else {}
    eventually(lambda: _assert_equal(db_scores(board), expected))

    def admitted() -> None:
        response = client.post(url, {"user_id": "late", "points": 5, "event_id": "late-1"}, format="json")
        assert response.status_code == 202, response.content

    eventually(admitted, timeout=10)
    eventually(lambda: _assert_equal(db_scores(board), {**expected, "late": 5}))


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def test_it_counts_a_tenant_over_its_share_of_the_last_second(db):
    client = redis_client()
    second = int(time.time()) + 10_000  # a second of its own, in the future
    tenant_share(client, tenant="a", events=950, second=second - 1)
    tenant_share(client, tenant="b", events=10, second=second - 1)
    tenant_share(client, tenant="d", events=40, second=second - 1)
    flood = tenant_share(client, tenant="a", events=10, second=second)
    assert flood == TenantShare(950, 1000, 3)
    assert flood.over_fair_share() and flood.at_or_over_split()  # 950 > 1.5 x 1000 / 3
    light = tenant_share(client, tenant="b", events=10, second=second)
    assert not light.over_fair_share() and not light.at_or_over_split()
    # A newcomer counts among the tenants it shares with: 1000 among 4.
    assert tenant_share(client, tenant="new", events=10, second=second) == TenantShare(0, 1000, 4)
    # A tenant alone is never over its fair share, but is at its split.
    tenant_share(client, tenant="c", events=5000, second=second + 5)
    alone = tenant_share(client, tenant="c", events=5000, second=second + 6)
    assert not alone.over_fair_share() and alone.at_or_over_split()


def test_it_holds_back_a_flooding_key_while_others_still_get_in(
    celery_workers: Workers, transactional_db, settings, api, make_board
):
    celery_workers.stop()
    board = make_board()
    flooder = bearer(APIClient(), ApiKey.generate(name="flooder", is_admin=True)[1])
    modest = bearer(APIClient(), ApiKey.generate(name="modest", is_admin=True)[1])
    url = f"/api/v1/leaderboards/{board.slug}/scores"

    def post(client: APIClient, tag: str, count: int) -> int:
        events = [{"user_id": f"{tag}{n}", "points": 1, "event_id": f"{tag}-{n}"} for n in range(count)]
        return client.post(url, {"events": events}, format="json").status_code

    # A backlog, then a bound that puts it past half: fair share is on, nobody is shed.
    assert [post(modest, f"warm{n}-", 1000) for n in range(20)] == [202] * 20
    eventually(
        lambda: _assert_equal(backlog_monitor.backlog() is not None and backlog_monitor.backlog().events > 0, True)
    )
    time.sleep(0.5)  # a fresh reading
    settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = 2 * backlog_monitor.backlog().events - 1
    time.sleep(1 - time.time() % 1 + 0.05)  # the start of a second
    assert [post(flooder, f"f{n}-", 100) for n in range(8)] == [202] * 8
    assert post(modest, "m-", 10) == 202
    time.sleep(1 - time.time() % 1 + 0.05)  # the next second judges the last one
    assert post(flooder, "late-f-", 100) == 429
    assert post(modest, "late-m-", 10) == 202


def _next_second() -> None:
    time.sleep(1 - time.time() % 1 + 0.05)


def test_it_shares_admission_per_tenant_against_a_flood_from_several_keys(
    celery_workers: Workers, transactional_db, settings, make_board
):
    # Nobody applies, so the backlog only grows; the bound is then set around it.
    celery_workers.stop()
    board = make_board()
    flood = [
        bearer(APIClient(), ApiKey.generate(name=f"flood-{n}", is_admin=True, tenant="flood")[1]) for n in range(3)
    ]
    modest = bearer(APIClient(), ApiKey.generate(name="modest", is_admin=True, tenant="modest")[1])
    newcomer = bearer(APIClient(), ApiKey.generate(name="newcomer", is_admin=True, tenant="newcomer")[1])
    url = f"/api/v1/leaderboards/{board.slug}/scores"
    sent = iter(range(10**6))

    def post(client: APIClient, count: int) -> int:
        batch = next(sent)
        events = [{"user_id": f"u{n}", "points": 1, "event_id": f"b{batch}-{n}"} for n in range(count)]
        return client.post(url, {"events": events}, format="json").status_code

    assert [post(modest, 1000) for _ in range(20)] == [202] * 20
    eventually(lambda: _assert_equal(bool(backlog_monitor.backlog() and backlog_monitor.backlog().events), True))
    time.sleep(0.5)  # a fresh reading
    backlog = backlog_monitor.backlog().events

    # Past half the bound: three keys of one tenant, each under a per-key share (300 of
    # 1,000 events among four keys), together far over the tenant's (900 among two).
    settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = 2 * backlog - 1
    _next_second()
    assert [post(key, 100) for key in flood for _ in range(3)] == [202] * 9
    assert post(modest, 100) == 202
    _next_second()
    assert [post(key, 10) for key in flood] == [429] * 3
    assert post(modest, 10) == 202

    # Past the bound: the tenant over an equal split is refused, a lighter one gets in.
    settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = backlog * 3 // 4
    _next_second()
    assert [post(key, 100) for key in flood for _ in range(3)] == [503] * 9
    assert post(modest, 10) == 202

    # A flooder alone in its second is over its split too, and a newcomer gets in.
    _next_second()
    assert [post(key, 100) for key in flood] == [503] * 3
    _next_second()
    assert post(flood[0], 10) == 503
    assert post(newcomer, 10) == 202


def test_past_the_hard_bound_a_request_is_refused_before_its_body_is_parsed(
    celery_workers: Workers, transactional_db, settings, api, admin_key, make_board
):
    celery_workers.stop()  # nobody applies: the backlog only grows
    board = make_board()
    client = bearer(api, admin_key)
    url = f"/api/v1/leaderboards/{board.slug}/scores"
    events = [{"user_id": f"u{n}", "points": 1} for n in range(500)]
    assert [client.post(url, {"events": events}, format="json").status_code for _ in range(4)] == [202] * 4
    eventually(
        lambda: _assert_equal(bool(backlog_monitor.backlog() and backlog_monitor.backlog().events >= 2000), True)
    )
    settings.LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS = 500  # the hard bound: 1,000
    # A body that is not even JSON: past the hard bound it is not read, so no 400.
    refused = client.post(url, b'{"user_id": ', content_type="application/json")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1", refused.content
    assert "too many events wait to be applied" in refused.json()["detail"]
    # Under the hard bound the same body is read, and refused for what it is.
    settings.LEADERBOARD_ADMISSION_HARD_BACKLOG_EVENTS = 10**9
    assert client.post(url, b'{"user_id": ', content_type="application/json").status_code == 400
