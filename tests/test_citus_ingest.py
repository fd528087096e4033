"""On a real Citus cluster (``make test-citus``): the ingest's statements, shard by shard.

A batch is cut by the shard of its users and each shard's statements are router-planned
to that shard, issued in ascending shard id (``scores.services.score_events_apply``):
checked with EXPLAIN and with the commands the coordinator sends to the workers; then a
batch over every shard and every aggregation applies exactly; then batches over the same
shards, their events in opposite orders, run concurrently without a distributed deadlock.
"""

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.db import DataError, OperationalError, connection

from rankings.models import Aggregation, Leaderboard, Order
from scores.citus import scores_distributed
from scores.models import EntryProfile, ProcessedEvent, Score
from scores.services import now_micros, score_events_apply
from tasks.messages import ScoreEvent
from tests.citus_checks import remote_commands, shard_index

pytestmark = pytest.mark.citus

DEADLOCK = "40P01"


@contextmanager
def statements_sent() -> Iterator[list[str]]:
    """The SQL this connection runs on the coordinator while recording."""
    sent: list[str] = []

    def record(execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield sent


def explain(statement: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}")
        return "\n".join(row[0] for row in cursor.fetchall())


def events_for(board: Leaderboard, rows: list[tuple[str, int, str]]) -> list[ScoreEvent]:
    accepted = now_micros()
    return [ScoreEvent(board.id, user, points, event_id, accepted) for user, points, event_id in rows]


def users_on_every_shard(per_shard: int) -> list[str]:
    """User ids, ``per_shard`` of them in each scores_score shard."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u, get_shard_id_for_distribution_column('scores_score', u) FROM unnest(%s::text[]) AS u",
            [[f"player-{n}" for n in range(per_shard * settings.LEADERBOARD_CITUS_SHARD_COUNT * 8)]],
        )
        found = cursor.fetchall()
    chosen: dict[int, list[str]] = {}
    for user, shard in found:
        if len(chosen.setdefault(shard, [])) < per_shard:
            chosen[shard].append(user)
    assert len(chosen) == settings.LEADERBOARD_CITUS_SHARD_COUNT
    assert all(len(users) == per_shard for users in chosen.values())
    return sorted(user for users in chosen.values() for user in users)


def test_it_knows_the_scores_are_distributed(db):
    with connection.cursor() as cursor:
        assert scores_distributed(cursor)


def test_it_routes_each_statement_to_one_shard_in_ascending_shard_order(transactional_db, make_board):
    boards = [
        make_board(aggregation=Aggregation.SUM, min_points=-100),
        make_board(aggregation=Aggregation.BEST, order=Order.ASC),
        make_board(aggregation=Aggregation.LAST),
    ]
    users = users_on_every_shard(3)
    # Every shard, every group, and zero-points events (rows only touched) between them.
    batch = [
        event
        for board in boards
        for event in events_for(
            board, [(user, 0 if n % 3 == 0 and board is boards[0] else n + 1, f"e{n}") for n, user in enumerate(users)]
        )
    ]
    with statements_sent() as sent, remote_commands() as remote:
        score_events_apply(events=batch)
    inserts = [statement for statement in sent if statement.lstrip().startswith("INSERT")]
    shards = settings.LEADERBOARD_CITUS_SHARD_COUNT
    # Per shard: its event ids, one upsert per group, and the touches between the sums.
    assert len(inserts) >= shards * 4, sent

    for statement in inserts:
        plan = explain(statement)
        assert "Task Count: 1" in plan, plan
        assert "INSERT ... SELECT" not in plan and "pull to coordinator" not in plan, plan
        assert "intermediate" not in plan.lower(), plan

    # On the wire: each INSERT reaches one shard; the event ids of every shard first, then
    # the score rows of every shard, each in ascending shard order.
    positions = {table: shard_index(table) for table in ("scores_score", "scores_processedevent")}
    order: list[tuple[int, str]] = []
    for _, command in remote.commands:
        if not command.startswith("INSERT"):
            continue
        one = RemoteShard.of(command, positions)
        order.append((one.position, one.table))
    assert len(order) == len(inserts), remote.commands
    assert order == sorted(order, key=lambda item: (item[1] != "scores_processedevent", item[0])), order
    assert {position for position, _ in order} == set(range(1, shards + 1))
    assert all(order.count((position, "scores_processedevent")) == 1 for position in range(1, shards + 1))


@dataclass(frozen=True)
class RemoteShard:
    """The one shard an INSERT sent to a worker writes: its table and hash-range position."""

    table: str
    position: int

    @classmethod
    def of(cls, command: str, positions: dict[str, dict[int, tuple[int, str]]]) -> "RemoteShard":
        head = command.split("(", 1)[0]  # "INSERT INTO public.scores_score_102009 AS citus_table_alias "
        found = [
            cls(table, positions[table][shard][0])
            for table in positions
            for shard in positions[table]
            if f"{table}_{shard} " in head
        ]
        assert len(found) == 1, command[:200]
        return found[0]


def test_it_applies_a_batch_over_every_shard_exactly(transactional_db, make_board):
    total, best, last = (
        make_board(aggregation=Aggregation.SUM, min_points=-100),
        make_board(aggregation=Aggregation.BEST),
        make_board(aggregation=Aggregation.LAST),
    )
    users = users_on_every_shard(5)
    rng = random.Random(8)
    expected: dict[tuple[int, str], int] = {}
    batch: list[ScoreEvent] = []
    accepted = now_micros()
    for n, user in enumerate(users):
        points = [rng.randint(-100, 100) for _ in range(3)]
        for i, value in enumerate(points):
            batch.append(ScoreEvent(total.id, user, value, f"s{n}-{i}", accepted))
            batch.append(ScoreEvent(best.id, user, abs(value), f"b{n}-{i}", accepted))
            # "last": the latest accepted time wins; the same time is broken by event id.
            batch.append(ScoreEvent(last.id, user, value, f"l{n}-{i}", accepted + i))
        expected[(total.id, user)] = sum(points)
        expected[(best.id, user)] = max(abs(value) for value in points)
        expected[(last.id, user)] = points[-1]
    rng.shuffle(batch)
    batch += batch[: len(batch) // 4]  # resent in the same batch

    changed = score_events_apply(events=batch)
    stored = {(s.leaderboard_id, s.user_id): s.score for s in Score.objects.all()}
    assert stored == expected
    assert {(c.leaderboard_id, c.row.user_id): c.row.score for c in changed} == expected

    # Applied again, all duplicates: nothing moves, every row is handed on as it is.
    again = score_events_apply(events=batch)
    assert {(s.leaderboard_id, s.user_id): s.score for s in Score.objects.all()} == expected
    assert {(c.leaderboard_id, c.row.user_id): c.row.score for c in again} == expected


@dataclass
class Tally:
    """What the writer threads saw: deadlocks (SQLSTATE 40P01) and any other error."""

    deadlocks: int = 0
    errors: list[str] = field(default_factory=list)
    applied: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def test_it_runs_overlapping_multi_shard_batches_without_deadlocks(transactional_db, make_board):
    """Writers apply batches over every shard, half of them with the events in the
    opposite order, sharing event ids (each counted once) and rows. With the default
    ``citus.distributed_deadlock_detection_factor`` a distributed deadlock would cancel a
    transaction with SQLSTATE 40P01 (the ingest task would retry it): none may happen."""
    total = make_board(aggregation=Aggregation.SUM, min_points=-100)
    best = make_board(aggregation=Aggregation.BEST)
    with connection.cursor() as cursor:
        cursor.execute("SHOW citus.distributed_deadlock_detection_factor")
        assert float(cursor.fetchone()[0]) == 2, "left at its default"
    users = users_on_every_shard(6)
    writers, rounds = 4, 25
    tally = Tally()
    expected: dict[str, int] = dict.fromkeys(users, 0)
    plans: list[list[list[ScoreEvent]]] = []
    for writer in range(writers):
        rng = random.Random(writer)
        plan = []
        for round_ in range(rounds):
            batch = []
            for user in users:
                points = rng.randint(-50, 50)
                expected[user] += points
                batch.append(ScoreEvent(total.id, user, points, f"w{writer}-r{round_}", 0))
                batch.append(ScoreEvent(best.id, user, rng.randint(0, 10**6), f"w{writer}-r{round_}", 0))
                # An event every writer sends in this round: recorded once, waited on by the rest.
                batch.append(ScoreEvent(total.id, user, 1, f"shared-r{round_}", 0))
            plan.append(batch if writer % 2 == 0 else batch[::-1])
        plans.append(plan)
    for user in users:
        expected[user] += rounds
    start = threading.Barrier(writers)

    def write(plan: list[list[ScoreEvent]]) -> None:
        try:
            start.wait()
            for batch in plan:
                accepted = now_micros()
                events = [ScoreEvent(e.leaderboard_id, e.user_id, e.points, e.event_id, accepted) for e in batch]
                while True:
                    try:
                        score_events_apply(events=events)
                        break
                    except OperationalError as exc:
                        with tally.lock:
                            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK:
                                tally.errors.append(str(exc))
                                return
                            tally.deadlocks += 1  # retried, as the ingest task would
                with tally.lock:
                    tally.applied += 1
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=write, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    print(
        f"\n[citus concurrent ingest] writers={writers} rounds={rounds} users={len(users)} "
        f"events_per_batch={len(plans[0][0])} deadlocks={tally.deadlocks} took={took:.1f}s"
    )
    assert tally.errors == []
    assert tally.deadlocks == 0
    assert tally.applied == writers * rounds
    assert dict(Score.objects.filter(leaderboard=total).values_list("user_id", "score")) == expected


def test_it_quotes_text_outside_the_id_alphabet(transactional_db, make_board):
    """Ids are validated at the door; should one ever arrive with a quote or a backslash,
    the literal VALUES are quoted by psycopg, not broken."""
    board = make_board(aggregation=Aggregation.LAST)
    odd = ["o'neil", "back\\slash", "per%cent", "semi;colon"]
    score_events_apply(events=events_for(board, [(user, n + 1, f"{user}'s event") for n, user in enumerate(odd)]))
    assert dict(Score.objects.filter(leaderboard=board).values_list("user_id", "score")) == {
        user: n + 1 for n, user in enumerate(odd)
    }
    assert Score.objects.get(leaderboard=board, user_id="o'neil").reached_by == "o'neil's event"


def test_it_rolls_back_the_whole_batch_when_a_shard_statement_fails(transactional_db, make_board):
    board = make_board()
    users = users_on_every_shard(2)
    too_long = "x" * 65  # longer than user_id's 64 characters: this shard's statement fails
    with pytest.raises(DataError):
        score_events_apply(events=events_for(board, [(user, 5, "e") for user in [*users, too_long]]))
    assert Score.objects.filter(leaderboard=board).count() == 0
    assert ProcessedEvent.objects.filter(leaderboard=board).count() == 0
    # The connection is usable again: the next batch applies.
    score_events_apply(events=events_for(board, [(user, 5, "e") for user in users]))
    assert Score.objects.filter(leaderboard=board).count() == len(users)


def test_it_writes_profiles_shard_by_shard_after_the_scores(transactional_db, make_board):
    board = make_board()
    users = users_on_every_shard(2)
    t = now_micros()
    # A quote and non-ASCII text: outside the plain alphabet, quoted by psycopg.
    batch = [
        ScoreEvent(board.id, user, 1, f"e{n}", t, f"O'Neil {n} ✓", json.dumps({"n": n, "s": "it's"}))
        for n, user in enumerate(users)
    ]
    with statements_sent() as sent:
        changed = score_events_apply(events=batch)
    profile_inserts = [s for s in sent if "scores_entryprofile" in s and s.lstrip().startswith("INSERT")]
    assert len(profile_inserts) == settings.LEADERBOARD_CITUS_SHARD_COUNT, "one statement per shard"
    for statement in profile_inserts:
        assert "Task Count: 1" in explain(statement), statement[:200]
    stored = {p.user_id: (p.display_name, p.metadata) for p in EntryProfile.objects.filter(leaderboard_id=board.id)}
    assert stored == {user: (f"O'Neil {n} ✓", {"n": n, "s": "it's"}) for n, user in enumerate(users)}
    assert all(change.profile is not None for change in changed)
