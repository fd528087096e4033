"""Ranking order as pure functions: one sort key for rows, top-K cuts and merges.

A row is ``tasks.messages.Row``: user_id, score, reached_us, version.
Rank order: better score first (by the board's order), then earlier ``reached_at``,
then ``user_id`` ascending by code point. Every function here is deterministic, so a
re-run chord member returns the same result.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

from tasks.messages import Row

INT64_MAX = 2**63 - 1
_OFFSET = 2**63


def to_micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // 1_000_000, tz=UTC).replace(microsecond=micros % 1_000_000)


def sort_value(score: int, desc: bool) -> int:
    return -score if desc else score


def rank_key(row: Row, desc: bool) -> tuple[int, int, str]:
    return (sort_value(row.score, desc), row.reached_us, row.user_id)


def top_k(rows: Iterable[Row], k: int, desc: bool) -> list[Row]:
    """The best k rows, keeping only the newest version of each user."""
    newest: dict[str, Row] = {}
    for row in rows:
        held = newest.get(row.user_id)
        if held is None or row.version > held.version:
            newest[row.user_id] = row
    return sorted(newest.values(), key=lambda r: rank_key(r, desc))[:k]


def merge_top_k(rows: Iterable[Row], k: int, desc: bool) -> tuple[list[Row], bool]:
    """``top_k`` of rows from several partials, and whether any user fell between them.

    A partial is cut to its board's top-K, so when a user's newer row ranks worse than an
    older one, a partial that held the older row may have cut someone who now belongs in
    the top-K: the merge can no longer be trusted and the root repairs from the database.
    """
    newest: dict[str, Row] = {}
    best: dict[str, tuple[int, int, str]] = {}
    for row in rows:
        held = newest.get(row.user_id)
        if held is None or row.version > held.version:
            newest[row.user_id] = row
        key = rank_key(row, desc)
        if row.user_id not in best or key < best[row.user_id]:
            best[row.user_id] = key
    fell = any(best[user] < rank_key(row, desc) for user, row in newest.items())
    return sorted(newest.values(), key=lambda r: rank_key(r, desc))[:k], fell


def index_member(row: Row, desc: bool) -> str:
    """A Redis sorted-set member whose byte order is the rank order.

    All members share the score 0, so Redis orders them by their bytes, and ZRANK is an
    exact O(log n) rank: a fixed-width sort value, a fixed-width reached-at, the user id.
    """
    return f"{sort_value(row.score, desc) + _OFFSET:020d}{row.reached_us:017d}{row.user_id}"


def parse_member(member: str, desc: bool) -> tuple[str, int, int]:
    """(user_id, score, reached_us) back from an index member."""
    value = int(member[:20]) - _OFFSET
    return member[37:], (-value if desc else value), int(member[20:37])
