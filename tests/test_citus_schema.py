"""The migrated schema obeys the Citus rules of DESIGN.md, read from pg_catalog.

The lists in ``leaderboard_project/citus.py`` say which tables are distributed (and by
which column) and which are reference tables; the distribute command uses the same lists.
"""

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from leaderboard_project.citus import COLOCATED_WITH, DISTRIBUTED, REFERENCE
from scores.citus import scores_distributed
from scores.services import now_micros, score_events_apply
from tasks.messages import ScoreEvent

APP_TABLE_PREFIXES = ("rankings_", "scores_")


def rows(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def unique_keys(table: str) -> list[tuple[str, list[str | None]]]:
    """Every unique index of a table (primary keys and unique constraints are backed by one).

    An expression column shows as None, which no distribution column equals.
    """
    return [
        (name, list(columns))
        for name, columns in rows(
            """
            SELECT i.indexrelid::regclass::text,
                   array_agg(a.attname ORDER BY k.ord)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = %s::regclass AND i.indisunique
            GROUP BY i.indexrelid
            """,
            [table],
        )
    ]


def constraints(table: str, kinds: str) -> list[tuple[str, str, list[str]]]:
    """(name, kind, columns) of the table's constraints of the given pg_constraint kinds."""
    return [
        (name, kind, list(columns))
        for name, kind, columns in rows(
            """
            SELECT c.conname, c.contype::text, array_agg(a.attname ORDER BY k.ord)
            FROM pg_constraint c
            CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
            WHERE c.conrelid = %s::regclass AND c.contype = ANY(%s)
            GROUP BY c.conname, c.contype
            """,
            [table, list(kinds)],
        )
    ]


def foreign_keys() -> list[tuple[str, str, str]]:
    """(referencing table, referenced table, constraint name) of every FK in the schema."""
    return rows(
        """
        SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, c.conname
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE c.contype = 'f' AND n.nspname = current_schema()
        """
    )


def column(table: str, name: str) -> tuple[str, str | None, bool] | None:
    """(type, collation, not null) of a column, or None when it is missing."""
    found = rows(
        """
        SELECT format_type(a.atttypid, a.atttypmod), co.collname, a.attnotnull
        FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped AND a.attnum > 0
        """,
        [table, name],
    )
    return found[0] if found else None


def test_it_has_every_listed_table(db):
    listed = [*DISTRIBUTED, *REFERENCE]
    missing = [t for t in listed if rows("SELECT to_regclass(%s)", [t])[0][0] is None]
    assert missing == []
    assert not set(DISTRIBUTED) & set(REFERENCE), "a table is both distributed and reference"


def test_it_lists_every_app_table(db):
    """A table left off both lists would stay local to the coordinator, where the
    distributed tables could not join it or point at it."""
    tables = {
        name
        for (name,) in rows(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE ANY(%s)",
            [[f"{p}%" for p in APP_TABLE_PREFIXES]],
        )
    }
    assert tables, "no app tables found: is the schema migrated?"
    assert tables - set(DISTRIBUTED) - set(REFERENCE) == set()


@pytest.mark.parametrize(("table", "distribution_column"), sorted(DISTRIBUTED.items()))
def test_it_puts_the_distribution_column_into_every_unique_key(db, table, distribution_column):
    keys = unique_keys(table)
    assert any(name.endswith("_pkey") for name, _ in keys), f"{table} has no primary key"
    offending = [(name, cols) for name, cols in keys if distribution_column not in cols]
    assert offending == [], f"unique indexes of {table} without {distribution_column}"
    declared = constraints(table, "pux")
    assert any(kind == "p" for _, kind, _ in declared), f"{table} has no PRIMARY KEY constraint"
    offending = [(name, cols) for name, _, cols in declared if distribution_column not in cols]
    assert offending == [], f"constraints of {table} without {distribution_column}"


@pytest.mark.parametrize(("table", "distribution_column"), sorted(DISTRIBUTED.items()))
def test_it_has_a_not_null_distribution_column(db, table, distribution_column):
    found = column(table, distribution_column)
    assert found is not None, f"{table} has no column {distribution_column}"
    assert found[2], f"{table}.{distribution_column} may be NULL"


def test_it_points_foreign_keys_of_distributed_tables_only_at_reference_tables(db):
    offending = [(src, dst, name) for src, dst, name in foreign_keys() if src in DISTRIBUTED and dst not in REFERENCE]
    assert offending == []
    # The rule is exercised: the score table does point at the leaderboards.
    assert any(src == "scores_score" and dst == "rankings_leaderboard" for src, dst, _ in foreign_keys())


def test_it_points_no_foreign_key_at_a_distributed_table(db):
    offending = [(src, dst, name) for src, dst, name in foreign_keys() if dst in DISTRIBUTED and src not in DISTRIBUTED]
    assert offending == []
    from_reference = [(src, dst, name) for src, dst, name in foreign_keys() if src in REFERENCE and dst in DISTRIBUTED]
    assert from_reference == []


def test_it_colocates_processed_events_with_scores_by_user(db):
    assert DISTRIBUTED["scores_score"] == "user_id"
    assert DISTRIBUTED["scores_processedevent"] == "user_id"
    assert COLOCATED_WITH.get("scores_processedevent") == "scores_score"
    # Colocation needs the same type (and collation, for text) on both sides.
    assert column("scores_processedevent", "user_id") == column("scores_score", "user_id")
    # The event table's key is (user_id, ..., event_id): dedup is a single-shard lookup.
    (pkey,) = [cols for _, kind, cols in constraints("scores_processedevent", "p")]
    assert pkey[0] == "user_id" and pkey[-1] == "event_id"


@pytest.mark.parametrize(("table", "target"), sorted(COLOCATED_WITH.items()))
def test_it_colocates_only_tables_with_the_same_distribution_column_type(db, table, target):
    assert table in DISTRIBUTED and target in DISTRIBUTED
    assert column(table, DISTRIBUTED[table]) == column(target, DISTRIBUTED[target])


def _schema_fingerprint() -> list[tuple]:
    return rows(
        """
        SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
        UNION ALL
        SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()
        UNION ALL
        SELECT 'table', relname, relkind::text, relpersistence::text FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace
        UNION ALL
        SELECT 'extension', extname, extversion, '' FROM pg_extension
        ORDER BY 1, 2, 3
        """
    )


def test_it_leaves_plain_postgres_alone_when_distributing(db):
    assert rows("SELECT 1 FROM pg_extension WHERE extname = 'citus'") == [], "this test needs plain PostgreSQL"
    before = _schema_fingerprint()
    out = StringIO()
    call_command("distribute_tables", stdout=out)
    assert "citus is not installed" in out.getvalue()
    assert _schema_fingerprint() == before
    assert rows("SELECT to_regclass('pg_dist_partition')") == [(None,)]


def test_it_keeps_plain_postgres_on_the_array_statements(db, make_board):
    """The shard-by-shard statements are for Citus: plain PostgreSQL (and the benchmark)
    keeps one ``INSERT … SELECT FROM unnest(…)`` per table and group."""
    assert rows("SELECT 1 FROM pg_extension WHERE extname = 'citus'") == [], "this test needs plain PostgreSQL"
    with connection.cursor() as cursor:
        assert not scores_distributed(cursor)
    board = make_board()
    sent: list[str] = []

    def record(execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        score_events_apply(events=[ScoreEvent(board.id, f"u{n}", n + 1, f"e{n}", now_micros()) for n in range(50)])
    inserts = [statement for statement in sent if statement.lstrip().startswith("INSERT")]
    assert len(inserts) == 2 and all("unnest(" in statement for statement in inserts), inserts


def test_it_keeps_hidden_users_for_reference_and_tombstones_with_the_scores(db):
    # Hidden users: few, joined by every ranking query of a board on every shard.
    assert "rankings_hiddenuser" in REFERENCE
    assert {dst for src, dst, _ in foreign_keys() if src == "rankings_hiddenuser"} == {"rankings_leaderboard"}
    # Same type and collation as the score rows they are compared with (NOT EXISTS).
    assert column("rankings_hiddenuser", "user_id") == column("scores_score", "user_id")
    # Erasure tombstones: read by ingest in the user's single-shard transaction.
    assert DISTRIBUTED["scores_eraseduser"] == "user_id"
    assert COLOCATED_WITH["scores_eraseduser"] == "scores_score"
    (pkey,) = [cols for _, kind, cols in constraints("scores_eraseduser", "p")]
    assert pkey == ["user_id"]
    assert column("scores_eraseduser", "user_id") == column("scores_score", "user_id")
