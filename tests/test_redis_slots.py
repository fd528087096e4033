"""Every Lua script the service runs touches keys of one Redis Cluster slot only (else a
cluster answers CROSSSLOT), checked on what the real service sends: Redis's MONITOR
records every EVALSHA while a worker ingests, ranks, reads, rebuilds and sheds load."""

import threading
import time
from collections import defaultdict

import pytest
from redis.crc import key_slot

from rankings import cache
from rankings.hiding import user_hide
from rankings.services import index_rebuild_start, rounds_sweep
from scores.admission import backlog_monitor, tenant_share
from scores.services import score_events_submit
from tests.checks import assert_top_consistent, db_scores, eventually


class ScriptCalls:
    """The keys of every EVALSHA/EVAL that Redis executes while it runs, by script."""

    def __init__(self) -> None:
        self.keys: dict[str, list[list[str]]] = defaultdict(list)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with cache.redis_client().monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                command = monitor.next_command()["command"]
                verb, _, rest = command.partition(" ")
                if verb.upper() not in ("EVALSHA", "EVAL"):
                    continue
                sha, numkeys, *args = rest.split(" ")
                self.keys[sha[:12]].append(args[: int(numkeys)])

    def __enter__(self) -> "ScriptCalls":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        cache.redis_client().ping()  # one more command, so the monitor wakes and sees the stop
        self._thread.join(5)


@pytest.mark.pipeline
def test_every_script_touches_one_slot(worker, strategy, make_board):
    board = make_board(top_n=5)
    with ScriptCalls() as calls:
        score_events_submit(leaderboard=board, events=[{"user_id": f"u{n}", "points": n + 1} for n in range(20)])

        def applied() -> None:
            assert len(db_scores(board)) == 20
            assert_top_consistent(board)

        eventually(applied)
        user_hide(leaderboard=board, user_id="u3")
        rounds_sweep()
        # A rebuild of the rank index (claim, load, advance, finish), on the worker.
        cache.keys_delete_matching(cache.redis_client(), f"{cache.keys.ready_key(board.id, board.current_period())}")
        index_rebuild_start(leaderboard=board, period=board.current_period())
        eventually(lambda: _true(cache.index_is_ready(cache.redis_client(), board.id, board.current_period())))
        # Admission: the monitor thread's reading of the counters, and a tenant's share.
        eventually(lambda: _true(backlog_monitor.backlog() is not None))
        tenant_share(cache.redis_client(), tenant="t:slots", events=1, second=int(time.time()))
    crossing = {
        sha: sorted({key_slot(key.encode()) for key in keys})
        for sha, calls_of in calls.keys.items()
        for keys in calls_of
        if len({key_slot(key.encode()) for key in keys}) > 1
    }
    print(f"[slots] scripts seen: {len(calls.keys)}, calls: {sum(map(len, calls.keys.values()))}")
    assert len(calls.keys) >= 8, sorted(calls.keys)
    assert crossing == {}, crossing


def _true(value: object) -> None:
    assert value
