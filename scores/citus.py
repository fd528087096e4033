"""The tables on a Citus cluster: distribute them, and check in Citus's catalog that they are.

``citus_distribute`` makes the lists of ``leaderboard_project/citus.py`` true in one
transaction; ``citus_problems`` reads ``pg_dist_partition``, ``pg_dist_shard``,
``pg_dist_placement`` and ``pg_dist_node`` and names everything that differs from them.
On plain PostgreSQL neither is called (``citus_installed`` is false).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.backends.utils import CursorWrapper

from leaderboard_project.citus import COLOCATED_WITH, DISTRIBUTED, REFERENCE

LISTED = [*REFERENCE, *DISTRIBUTED]


@dataclass(frozen=True)
class CitusTable:
    """One row of pg_dist_partition, as the checks need it."""

    name: str
    method: str  # "h" hash-distributed; "n" reference (replicated) or Citus local (single)
    column: str | None
    colocation: int
    replicated: bool  # repmodel "t": a reference table


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    definition: str


def citus_installed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
        return cursor.fetchone() is not None


# Per open database connection: whether its scores_score is hash-distributed. A new
# connection (CONN_MAX_AGE, a reconnect after an outage) asks again, so a process that
# started before ``distribute_tables`` ran picks the distributed statements up in time.
_distributed: "WeakKeyDictionary[object, bool]" = WeakKeyDictionary()


def scores_distributed(cursor: CursorWrapper) -> bool:
    """Whether this cursor's database keeps scores_score hash-distributed on Citus (one
    catalog look-up per connection; plain PostgreSQL answers False from then on)."""
    raw = cursor.connection
    known = _distributed.get(raw)
    if known is None:
        cursor.execute(
            "SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL "
            "AND to_regclass('public.scores_score') IS NOT NULL"
        )
        known = bool(cursor.fetchone()[0])
        if known:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_dist_partition "
                "WHERE logicalrelid = 'scores_score'::regclass AND partmethod = 'h')"
            )
            known = bool(cursor.fetchone()[0])
        _distributed[raw] = known
    return known


def user_shards(cursor: CursorWrapper, users: Sequence[str] | str) -> dict[str, int]:
    """user id -> the scores_score shard holding it (its event ids are in the colocated
    scores_processedevent shard), in one round trip. ``users`` is a list or a ``text[]``
    literal. Citus answers from its metadata cache on the coordinator; the shard ids stay
    the same when a rebalance moves shards between nodes (only a split makes new ones)."""
    cursor.execute(
        "SELECT u, get_shard_id_for_distribution_column('scores_score', u) FROM unnest(%s::text[]) AS u",
        [users],
    )
    return dict(cursor.fetchall())


def citus_tables(cursor: CursorWrapper) -> dict[str, CitusTable]:
    cursor.execute(
        """
        SELECT logicalrelid::regclass::text, partmethod::text,
               CASE WHEN partmethod = 'h' THEN column_to_column_name(logicalrelid, partkey) END,
               colocationid, repmodel = 't'
        FROM pg_dist_partition WHERE logicalrelid::regclass::text = ANY(%s)
        """,
        [LISTED],
    )
    return {row[0]: CitusTable(*row) for row in cursor.fetchall()}


def shard_workers(cursor: CursorWrapper) -> list[tuple[str, int]]:
    """The nodes that should hold shards: active primaries other than the coordinator."""
    cursor.execute(
        """
        SELECT nodename, nodeport FROM pg_dist_node
        WHERE isactive AND noderole = 'primary' AND shouldhaveshards AND groupid <> 0
        ORDER BY nodeport, nodename
        """
    )
    return [tuple(row) for row in cursor.fetchall()]


def shard_placements(cursor: CursorWrapper) -> dict[str, tuple[int, set[tuple[str, int]]]]:
    """table -> (number of shards, nodes holding a placement of one of them)."""
    cursor.execute(
        """
        SELECT s.logicalrelid::regclass::text, count(DISTINCT s.shardid),
               array_agg(DISTINCT n.nodename || ':' || n.nodeport)
        FROM pg_dist_shard s
        JOIN pg_dist_placement p ON p.shardid = s.shardid
        JOIN pg_dist_node n ON n.groupid = p.groupid
        WHERE s.logicalrelid::regclass::text = ANY(%s)
        GROUP BY 1
        """,
        [LISTED],
    )
    found: dict[str, tuple[int, set[tuple[str, int]]]] = {}
    for table, shards, nodes in cursor.fetchall():
        found[table] = (shards, {(host, int(port)) for host, port in (node.rsplit(":", 1) for node in nodes)})
    return found


def citus_problems() -> list[str]:
    """Everything that differs from the lists, read from Citus's catalog; empty when right."""
    problems: list[str] = []
    with connection.cursor() as cursor:
        tables = citus_tables(cursor)
        workers = set(shard_workers(cursor))
        placements = shard_placements(cursor)
        cursor.execute("SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE isactive AND noderole = 'primary'")
        every_node = {(host, port) for _, host, port in cursor.fetchall()}
    if not workers:
        problems.append("no active worker node takes shards (citus_add_node, see bin/ensure-citus)")
    for table in REFERENCE:
        found = tables.get(table)
        if found is None or found.method != "n" or not found.replicated:
            problems.append(f"{table} is not a reference table ({found or 'not in pg_dist_partition'})")
        elif placements.get(table, (0, set()))[1] != every_node:
            problems.append(f"{table} is not copied to every node: {sorted(placements.get(table, (0, set()))[1])}")
    for table, column in DISTRIBUTED.items():
        found = tables.get(table)
        if found is None or found.method != "h":
            problems.append(f"{table} is not hash-distributed ({found or 'not in pg_dist_partition'})")
            continue
        if found.column != column:
            problems.append(f"{table} is distributed by {found.column}, not {column}")
        shards, nodes = placements.get(table, (0, set()))
        if shards != settings.LEADERBOARD_CITUS_SHARD_COUNT:
            problems.append(
                f"{table} has {shards} shards, LEADERBOARD_CITUS_SHARD_COUNT is "
                f"{settings.LEADERBOARD_CITUS_SHARD_COUNT} (alter_distributed_table changes it)"
            )
        if nodes != workers:
            problems.append(f"{table} has placements on {sorted(nodes)}, workers are {sorted(workers)} (rebalance)")
    for table, anchor in COLOCATED_WITH.items():
        mine, theirs = tables.get(table), tables.get(anchor)
        if mine and theirs and mine.colocation != theirs.colocation:
            problems.append(f"{table} (colocation {mine.colocation}) is not with {anchor} ({theirs.colocation})")
    return problems


def _foreign_keys(cursor: CursorWrapper) -> list[ForeignKey]:
    cursor.execute(
        """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE contype = 'f' AND (conrelid::regclass::text = ANY(%s) OR confrelid::regclass::text = ANY(%s))
        ORDER BY 1, 2
        """,
        [LISTED, LISTED],
    )
    return [ForeignKey(*row) for row in cursor.fetchall()]


def _has_identity(cursor: CursorWrapper, table: str) -> bool:
    cursor.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attidentity <> '' AND NOT attisdropped", [table]
    )
    return cursor.fetchone() is not None


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def citus_distribute() -> list[str]:
    """Make the reference and distributed tables, colocated, with their foreign keys; say what was done.

    The foreign keys are dropped first and put back last. While a foreign key points
    from a plain table to a new reference table, Citus turns the plain table into a
    "Citus local" table, which ``create_distributed_table`` must then undistribute, and
    it will not for identity columns (citusdata/citus#7888). Everything runs in one
    transaction, so a failure leaves the schema as it was and a re-run starts over.
    """
    done: list[str] = []
    with transaction.atomic(), connection.cursor() as cursor:
        # DDL on reference tables and the shards of distributed tables that point at them
        # must share one connection per node inside a transaction.
        cursor.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
        tables = citus_tables(cursor)
        for table, column in DISTRIBUTED.items():
            found = tables.get(table)
            if found and found.method == "h" and found.column != column:
                raise ValueError(f"{table} is distributed by {found.column}, not {column}: fix it by hand")
        pending_reference = [t for t in REFERENCE if not (tables.get(t) and tables[t].replicated)]
        pending_distributed = [t for t in DISTRIBUTED if not (tables.get(t) and tables[t].method == "h")]
        if not pending_reference and not pending_distributed:
            cursor.execute("SELECT replicate_reference_tables()")
            return done
        stuck = [t for t in [*pending_reference, *pending_distributed] if t in tables and _has_identity(cursor, t)]
        if stuck:
            raise ValueError(
                f"{', '.join(stuck)}: left as Citus local tables by an older distribute_tables, and Citus cannot "
                "undistribute a table with an identity column (citusdata/citus#7888). Recreate the database "
                "(it holds no scores: the hot tables never reached the workers) and run migrate, then this command."
            )
        foreign_keys = _foreign_keys(cursor)
        for fk in foreign_keys:
            cursor.execute(f"ALTER TABLE {_quote(fk.table)} DROP CONSTRAINT {_quote(fk.name)}")
        for table in [*pending_reference, *pending_distributed]:
            if table in tables:
                # A Citus local table, left by an older run of this command.
                cursor.execute("SELECT undistribute_table(%s)", [table])
                done.append(f"undistributed the Citus local table {table}")
        for table in pending_reference:
            cursor.execute("SELECT create_reference_table(%s)", [table])
            done.append(f"reference table {table}")
        for table in pending_distributed:
            column = DISTRIBUTED[table]
            if table in COLOCATED_WITH:
                # Same shards as its anchor (distributed before it: the dict is in that order).
                cursor.execute(
                    "SELECT create_distributed_table(%s, %s, colocate_with => %s)",
                    [table, column, COLOCATED_WITH[table]],
                )
            else:
                cursor.execute(
                    "SELECT create_distributed_table(%s, %s, colocate_with => 'none', shard_count => %s)",
                    [table, column, settings.LEADERBOARD_CITUS_SHARD_COUNT],
                )
            done.append(f"distributed table {table} by {column} ({settings.LEADERBOARD_CITUS_SHARD_COUNT} shards)")
        for fk in foreign_keys:
            cursor.execute(f"ALTER TABLE {_quote(fk.table)} ADD CONSTRAINT {_quote(fk.name)} {fk.definition}")
            done.append(f"foreign key {fk.name} on {fk.table}")
    return done


def citus_sequential_modify(using: str = "default") -> None:
    """Inside a transaction: on Citus, one connection per worker for its multi-shard writes.

    Deleting a board deletes its rows on every shard (in parallel, many connections per
    node), then the board itself, a reference-table row with foreign keys from those
    shards, which Citus refuses to write after a parallel access in the same transaction.
    With one connection per node both writes can share it. A no-op on plain PostgreSQL.
    """
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
        if cursor.fetchone() is not None:
            cursor.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
