"""The merge levels and the write path through a real worker: roots bounded by the merge
window, rounds that grow levels with their partials, several messages per ingest
transaction, and requests sharing a confirmed publish."""

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from kombu import Connection

from rankings import cache
from rankings import redis_keys as keys
from rankings.models import Leaderboard
from rankings.services import ranking_handoff
from scores.publisher import ingest_publisher
from scores.services import now_micros, score_events_apply, score_events_submit
from tasks.messages import ScoreEvent
from tasks.queues import all_queue_names
from tests.checks import assert_top_consistent, db_scores, eventually, queued_messages
from tests.conftest import Workers

pytestmark = pytest.mark.pipeline
PREFIX = django_settings.LEADERBOARD_QUEUE_PREFIX


@pytest.fixture
def merge_worker(celery_workers: Workers, transactional_db: None, settings: object) -> Iterator[Workers]:
    settings.LEADERBOARD_RANKING_STRATEGY = "merge_tree"
    celery_workers.ensure("merge_tree")
    yield celery_workers


class WorkerLog:
    """The worker's log lines written since this object was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def lines(self, pattern: str) -> list[re.Match]:
        with open(self.path, errors="replace") as log:
            log.seek(self.offset)
            return [m for line in log if (m := re.search(pattern, line))]


def roots_of(log: WorkerLog, board: Leaderboard) -> list[tuple[int, int]]:
    """(partials, levels) of each root the worker ran for the board."""
    found = log.lines(rf"merge root: board={board.id} partials=(\d+) levels=(\d+)")
    return [(int(m[1]), int(m[2])) for m in found]


def settled(board: Leaderboard, expected: dict[str, int], timeout: float = 90.0) -> None:
    def check() -> None:
        assert db_scores(board) == expected
        assert_top_consistent(board)

    eventually(check, timeout=timeout)


def test_it_merges_a_windows_partials_in_levels_of_fan_in(merge_worker, make_board, settings):
    # The pushes run here with a 3 s window, so one root (on the worker) takes them all.
    settings.LEADERBOARD_MERGE_WINDOW_MS = 3000
    board = make_board(top_n=5)
    log = WorkerLog(merge_worker.log_path)
    expected = {}
    for n in range(30):
        user, points = f"u{n:02d}", (n * 37) % 101
        batch = [ScoreEvent(board.id, user, points, f"e{n}", now_micros())]
        ranking_handoff(changed=score_events_apply(events=batch), oldest_accepted_us=batch[0].accepted_us)
        expected[user] = points
    settled(board, expected)
    # 30 partials, fan-in 3: 10 level-1 merges, then chords of 3 -> 4 -> 2 -> 1.
    eventually(lambda: _assert_equal(roots_of(log, board), [(30, 4)]))


def test_it_runs_a_boards_root_at_most_once_per_window(merge_worker, make_board, settings):
    board = make_board()
    log = WorkerLog(merge_worker.log_path)
    started = time.monotonic()
    expected: dict[str, int] = {}
    while time.monotonic() - started < 3.0:
        events = [{"user_id": f"u{n}", "points": 1} for n in range(20)]
        score_events_submit(leaderboard=board, events=events)
        for event in events:
            expected[event["user_id"]] = expected.get(event["user_id"], 0) + 1
    settled(board, expected)
    elapsed_ms = (time.monotonic() - started) * 1000
    time.sleep(0.5)  # the last root's log line follows its publish
    roots = roots_of(log, board)
    window = settings.LEADERBOARD_MERGE_WINDOW_MS
    assert 0 < len(roots) <= elapsed_ms / window + 2, f"{len(roots)} roots in {elapsed_ms:.0f} ms"
    # Far fewer roots than ingest transactions: rounds merge batches.
    transactions = len(log.lines(r"ingest transaction: messages=\d+"))
    assert len(roots) < transactions, (len(roots), transactions)


def test_it_applies_queued_messages_in_one_transaction(merge_worker, make_board):
    board = make_board()
    merge_worker.stop()  # let messages queue up
    for n in range(12):
        score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 1, "event_id": f"e{n}"}])
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 1, "event_id": "e0"}])  # a resend
    assert queued_messages() >= 13
    log = WorkerLog(merge_worker.log_path)
    merge_worker.ensure("merge_tree")
    settled(board, {"a": 12})
    eventually(lambda: _assert_equal(sum(int(m[1]) for m in log.lines(r"ingest transaction: messages=(\d+)")), 13))
    sizes = [int(m[1]) for m in log.lines(r"ingest transaction: messages=(\d+)")]
    assert sum(sizes) == 13 and max(sizes) > 1, sizes


def test_it_shares_one_confirmed_publish_among_concurrent_requests(merge_worker, make_board):
    board = make_board()
    publisher = ingest_publisher()
    threads_count, rounds_count = 16, 5
    start = threading.Barrier(threads_count)
    before = publisher.publishes

    def client(n: int) -> None:
        start.wait()
        for r in range(rounds_count):
            event = {"user_id": f"u{n}", "points": 2, "event_id": f"{uuid.uuid4().hex}-{r}"}
            assert score_events_submit(leaderboard=board, events=[event]) == 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = threads_count * rounds_count
    messages = publisher.publishes - before
    assert 0 < messages < requests, f"{messages} messages for {requests} requests"
    settled(board, {f"u{n}": 2 * rounds_count for n in range(threads_count)})


def test_a_redelivered_batch_schedules_the_root_its_dead_worker_claimed(merge_worker, make_board, settings):
    # A worker killed between its push's root claim and the root's publish (a kill -9 of
    # the fault test, found in CI) leaves the board's claim held for its TTL and no root
    # coming; once the load stops, no push claims it again. What it leaves: the claim, and
    # its message unacknowledged, which the broker redelivers.
    board = make_board()
    score_events_submit(leaderboard=board, events=[{"user_id": "z", "points": 1, "event_id": "e0"}])
    settled(board, {"z": 1})  # a published top-N, which the next root must change
    merge_worker.stop()
    score_events_submit(leaderboard=board, events=[{"user_id": "a", "points": 5, "event_id": "e1"}])
    client = cache.redis_client()
    client.set(keys.root_due_key(board.id, board.current_period()), "1", px=settings.LEADERBOARD_ROOT_CLAIM_TTL_MS)
    with Connection(settings.CELERY_BROKER_URL) as conn:
        channel = conn.channel()
        queues = all_queue_names(PREFIX, settings.LEADERBOARD_INGEST_PARTITIONS)
        held = [message for queue in queues if (message := channel.basic_get(queue))]
        assert len(held) == 1  # taken, never acknowledged: the dead worker's
    merge_worker.ensure("merge_tree")
    # Well within the claim's TTL: the redelivered batch schedules the root itself.
    settled(board, {"z": 1, "a": 5}, timeout=settings.LEADERBOARD_ROOT_CLAIM_TTL_MS / 3000)


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


@pytest.mark.parametrize(
    "poison",
    [b"not json", b'[99, 1, "all", [], 0]', b'[1, 1, "all", [["u", "x", 0, 1]], 0]'],
    ids=["undecodable", "other wire version", "bad row"],
)
def test_it_sets_a_poison_partial_aside_and_repairs_the_board(merge_worker, make_board, admin_client, poison):
    # A partial no root can read (a rolling upgrade's, a bug's) in a board's level 0,
    # between real ones: the rounds go on, the top-N is repaired from the database.
    from django.urls import reverse

    from rankings import cache, redis_keys, rounds

    board = make_board(top_n=3)
    period = board.current_period()
    client = cache.redis_client()
    client.delete(redis_keys.asides_key())  # what an earlier test's boards left
    submit = [{"user_id": f"u{n}", "points": n + 1} for n in range(5)]
    score_events_submit(leaderboard=board, events=submit[:2])
    settled(board, {"u0": 1, "u1": 2})
    client.rpush(redis_keys.pending_key(board.id, period), poison)
    score_events_submit(leaderboard=board, events=submit[2:])
    settled(board, {f"u{n}": n + 1 for n in range(5)})

    def finished() -> None:
        assert rounds.board_rounds_state(client, board.id, period) == (False, 0)

    eventually(finished)
    assert cache.partials_set_aside(client) == {(board.id, period): 1}
    page = admin_client.get(reverse("admin-pipeline")).content.decode()
    assert f"{board.slug} ({period}): 1" in page
