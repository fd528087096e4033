"""The whole service under concurrent HTTP load, with a real worker, for both strategies.

8 clients send 20,000+ events (single and batched) over 1,200 users; more than 10% are
resent with the same event_id and some points are negative. After the pipeline drains,
every total is exact and the top-N in Redis and in the admin table equals the database's.
"""

import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rankings.models import Leaderboard, TopN
from tests.checks import (
    assert_ranks_consistent,
    assert_top_consistent,
    db_scores,
    eventually,
    queued_messages,
)

pytestmark = pytest.mark.pipeline

CLIENTS = 8
USERS = 1200
EVENTS = 20_000
RESEND_SHARE = 0.12
# 90% of the requests carry one event, the rest batches of 2-200: about 10% of the events
# arrive one per request.
SINGLE_REQUEST_SHARE = 0.9


def _workload(rng: random.Random) -> tuple[list[list[dict]], dict[str, int], int]:
    """Requests (each a list of events), the exact expected totals, and the resent count."""
    events = []
    for n in range(EVENTS):
        user = f"player-{rng.randrange(USERS)}"
        points = rng.randint(-50, 500) if rng.random() < 0.15 else rng.randint(0, 500)
        event = {"user_id": user, "points": points}
        if rng.random() < 0.8:  # the rest get ids from the service
            event["event_id"] = f"ev-{n}"
        events.append(event)
    expected: dict[str, int] = {}
    for event in events:
        expected[event["user_id"]] = expected.get(event["user_id"], 0) + event["points"]
    with_ids = [e for e in events if "event_id" in e]
    resent = rng.sample(with_ids, int(len(events) * RESEND_SHARE))
    stream = events + resent
    rng.shuffle(stream)
    requests, i = [], 0
    while i < len(stream):
        size = 1 if rng.random() < SINGLE_REQUEST_SHARE else rng.randint(2, 200)
        requests.append(stream[i : i + size])
        i += size
    return requests, expected, len(resent)


def _send(base_url: str, key: str, slug: str, requests: list[list[dict]]) -> int:
    accepted = 0
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for batch in requests:
            body = batch[0] if len(batch) == 1 else {"events": batch}
            response = client.post(f"/api/v1/leaderboards/{slug}/scores", json=body)
            assert response.status_code == 202, response.text
            accepted += response.json()["accepted"]
    return accepted


def _roots(log_text: str, board: Leaderboard) -> list[tuple[int, int]]:
    """(partials, levels) of each root the worker ran for the board."""
    runs = re.findall(rf"merge root: board={board.id} partials=(\d+) levels=(\d+)", log_text)
    return [(int(partials), int(levels)) for partials, levels in runs]


def test_it_is_exact_under_concurrent_load(worker, live_server, admin_key, strategy):
    log_start = worker.log_path.stat().st_size
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {admin_key}"}) as admin:
        created = admin.post(
            "/api/v1/leaderboards/",
            json={
                "slug": f"e2e-{strategy.replace('_', '-')}",
                "name": "End to end",
                "top_n": 100,
                "min_points": -50,
            },
        )
        assert created.status_code == 201, created.text
    board = Leaderboard.objects.get(slug=created.json()["slug"])

    requests, expected, resent = _workload(random.Random(2026))
    shares = [requests[i::CLIENTS] for i in range(CLIENTS)]
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        accepted = sum(pool.map(lambda share: _send(live_server.url, admin_key, board.slug, share), shares))
    sent_for = time.monotonic() - started
    assert accepted == EVENTS + resent

    def drained() -> None:
        assert queued_messages() == 0
        assert db_scores(board) == expected
        assert_top_consistent(board)

    eventually(drained, timeout=300)
    drained_after = time.monotonic() - started
    time.sleep(1)  # nothing late may arrive and count twice
    drained()
    sample = random.Random(7).sample(sorted(expected), 40)
    assert_ranks_consistent(board, sample)

    top = TopN.objects.get(leaderboard=board)
    with open(worker.log_path) as log:
        log.seek(log_start)
        roots = _roots(log.read(), board)
    if strategy == "merge_tree":
        # Rounds merge many ingest batches (fan-in 3 in the tests): several levels.
        assert roots and max(levels for _, levels in roots) >= 2, "rounds should have built multi-level trees"
    partials = sum(p for p, _ in roots)
    depth = (
        f"roots={len(roots)} partials={partials} max_levels={max((lv for _, lv in roots), default=0)} "
        f"sent_messages_per_root={len(requests) / max(1, len(roots)):.1f}"
    )
    print(
        f"\n[e2e {strategy}] requests={len(requests)} events={EVENTS} resent={resent} users={len(expected)} "
        f"accepted={accepted} sent_in={sent_for:.1f}s drained_in={drained_after:.1f}s "
        f"top_version={top.version} {depth}"
    )
