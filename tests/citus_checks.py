"""What the Citus cluster did, read from the cluster itself: which shards hold a board's
rows, and which commands the coordinator sent to the workers."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection

from rankings.models import Leaderboard

# "issuing <command>" notices of citus.log_remote_commands; the detail names the node.
_NODE = re.compile(r"on server \S+@(?P<host>[^:\s]+):(?P<port>\d+)")
_SHARD = re.compile(r"\b(scores_score|scores_processedevent|rankings_topn)_(\d+)\b")


@dataclass
class RemoteCommands:
    """Commands the coordinator sent to worker nodes while recording was on."""

    commands: list[tuple[str, str]] = field(default_factory=list)  # (node "host:port", command)

    @property
    def nodes(self) -> set[str]:
        return {node for node, _ in self.commands}

    def shards(self, table: str) -> set[int]:
        return {int(shard) for _, cmd in self.commands for name, shard in _SHARD.findall(cmd) if name == table}

    def prepared(self) -> bool:
        """Two-phase commit: the transaction wrote on more than one node."""
        return any(cmd.startswith("PREPARE TRANSACTION") for _, cmd in self.commands)


@contextmanager
def remote_commands() -> Iterator[RemoteCommands]:
    """Record the coordinator's commands to the workers (citus.log_remote_commands)."""
    seen = RemoteCommands()
    connection.ensure_connection()
    raw = connection.connection

    def on_notice(diag: object) -> None:
        message = diag.message_primary or ""
        node = _NODE.search(diag.message_detail or "")
        if message.startswith("issuing ") and node:
            seen.commands.append((f"{node['host']}:{node['port']}", message.removeprefix("issuing ")))

    with connection.cursor() as cursor:
        cursor.execute("SET citus.log_remote_commands TO on")
    raw.add_notice_handler(on_notice)
    try:
        yield seen
    finally:
        raw.remove_notice_handler(on_notice)
        with connection.cursor() as cursor:
            cursor.execute("RESET citus.log_remote_commands")


def shard_index(table: str) -> dict[int, tuple[int, str]]:
    """shard id -> (position of its hash range, node "host:port" holding it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.shardid, rank() OVER (ORDER BY s.shardminvalue::bigint), n.nodename || ':' || n.nodeport
            FROM pg_dist_shard s
            JOIN pg_dist_placement p ON p.shardid = s.shardid
            JOIN pg_dist_node n ON n.groupid = p.groupid
            WHERE s.logicalrelid = %s::regclass
            """,
            [table],
        )
        return {shard: (position, node) for shard, position, node in cursor.fetchall()}


def board_shard_rows(board: Leaderboard, table: str = "scores_score") -> dict[int, tuple[str, int]]:
    """shard id -> (node, rows of this board in it), for the shards that hold any."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT r.shardid, n.nodename || ':' || n.nodeport, r.result::bigint
            FROM run_command_on_shards(%s, %s) r
            JOIN pg_dist_placement p ON p.shardid = r.shardid
            JOIN pg_dist_node n ON n.groupid = p.groupid
            WHERE r.success
            """,
            [table, f"SELECT count(*) FROM %s WHERE leaderboard_id = {int(board.id)}"],
        )
        return {shard: (node, rows) for shard, node, rows in cursor.fetchall() if rows > 0}


def worker_nodes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nodename || ':' || nodeport FROM pg_dist_node "
            "WHERE isactive AND noderole = 'primary' AND shouldhaveshards AND groupid <> 0"
        )
        return {row[0] for row in cursor.fetchall()}
