"""Display names and metadata: who an entry is (DESIGN, "Additions v3").

A score event may carry ``display_name`` and ``metadata``. For each (board, period, user)
the service keeps each field's value from the latest accepted event that carried it
(last-writer-wins on (accepted time, event_id), field by field); an event without them
leaves them as they were, and a duplicate changes nothing.

Where they live, and why there:
- ``scores_entryprofile`` (``EntryProfile``), a table of its own, colocated with the scores:
  written in the ingest transaction only for events that carry a field, so the score
  rows, their ranking index, the partials and the Redis rank index carry nothing more.
- Redis keeps a copy per (board, period) for the reads (``rankings.cache``): each user's
  entry fields pre-rendered as JSON, written after the commit with the row's order key
  (newest stamp, then version), so copies written out of order keep the newest.
- Reads add the fields to every entry they answer (``rankings.selectors``).
"""

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from django.db import connection
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from tasks.messages import ProfileCopy

DISPLAY_NAME_MAX = 64
METADATA_MAX_KEYS = 16
METADATA_MAX_BYTES = 1024

# Unicode's control characters (category Cc): C0, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
DISPLAY_NAME_PATTERN = r"\A[^\x00-\x1f\x7f-\x9f]{1,64}\Z"

_json = msgspec.json.Encoder()
_NO_FIELDS = b'"display_name":null,"metadata":null'


def display_name_problem(value: str) -> str | None:
    """Why ``value`` is no display name, or None."""
    if not 1 <= len(value) <= DISPLAY_NAME_MAX:
        return f"Must be 1 to {DISPLAY_NAME_MAX} characters."
    if _CONTROL.search(value):
        return "Must not contain control characters."
    if not _is_utf8(value):
        return "Must be valid Unicode (no lone surrogates)."
    return None


def _is_utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _finite(value: Any) -> bool:
    """No number JSON cannot carry back (an infinity from an overflowing float)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def metadata_problem(value: Any) -> str | None:
    """Why ``value`` is no metadata object, or None."""
    if not isinstance(value, dict):
        return "Must be a JSON object."
    if len(value) > METADATA_MAX_KEYS:
        return f"Must have at most {METADATA_MAX_KEYS} keys."
    if not _finite(value):
        return "Numbers must be finite."
    try:
        encoded = _json.encode(value)
    except (UnicodeEncodeError, OverflowError, TypeError):
        return "Must be valid JSON (no lone surrogates)."
    if len(encoded) > METADATA_MAX_BYTES:
        return f"Must be at most {METADATA_MAX_BYTES} bytes as compact JSON (got {len(encoded)})."
    return None


def metadata_encode(value: dict[str, Any]) -> str:
    """The compact JSON of a valid metadata object: what the message carries."""
    return _json.encode(value).decode()


def entry_fields(display_name: str | None, metadata_json: str | None) -> bytes:
    """The two fields as they follow ``"score":…`` in an entry's JSON."""
    if display_name is None and metadata_json is None:
        return _NO_FIELDS
    name = _json.encode(display_name)
    # Re-encoded from the database's text, so every copy renders the same bytes.
    metadata = b"null" if metadata_json is None else _json.encode(msgspec.json.decode(metadata_json))
    return b'"display_name":' + name + b',"metadata":' + metadata


@dataclass(frozen=True)
class RowKey:
    """One (board, period, user) row: its key in the score and profile tables, in the
    order row locks are taken."""

    user_id: str
    leaderboard_id: int
    period: str


@dataclass(frozen=True)
class ProfileChange:
    """A batch's latest value of each field for one row (None: no fresh event carried it)."""

    display_name: str | None = None
    display_name_us: int | None = None
    display_name_event: str = ""
    metadata: str | None = None  # compact JSON
    metadata_us: int | None = None
    metadata_event: str = ""


@dataclass(frozen=True)
class StoredProfile:
    """A profile row as committed: what the Redis copy and the reads get."""

    key: RowKey
    display_name: str | None
    metadata: str | None  # JSON text
    stamp_us: int  # the newer of the two fields' accepted times
    version: int

    @property
    def fields(self) -> bytes:
        return entry_fields(self.display_name, self.metadata)

    @property
    def copy(self) -> ProfileCopy:
        """For the Redis copy, with the key that orders copies."""
        return ProfileCopy(self.stamp_us, self.version, self.fields)


def profile_change(events: Iterable[Any]) -> ProfileChange | None:
    """Fold one row's fresh events: each field from the latest event carrying it."""
    names = [e for e in events if e.display_name is not None]
    metas = [e for e in events if e.metadata is not None]
    if not names and not metas:
        return None
    name = max(names, key=lambda e: (e.accepted_us, e.event_id)) if names else None
    meta = max(metas, key=lambda e: (e.accepted_us, e.event_id)) if metas else None
    return ProfileChange(
        display_name=name.display_name if name else None,
        display_name_us=name.accepted_us if name else None,
        display_name_event=name.event_id if name else "",
        metadata=meta.metadata if meta else None,
        metadata_us=meta.accepted_us if meta else None,
        metadata_event=meta.event_id if meta else "",
    )


def _newer(field: str) -> str:
    return (
        f"(EXCLUDED.{field}_us IS NOT NULL AND (p.{field}_us IS NULL OR "
        f"(EXCLUDED.{field}_us, EXCLUDED.{field}_event) > (p.{field}_us, p.{field}_event)))"
    )


def _take(field: str) -> str:
    newer = _newer(field)
    return ", ".join(
        f"{column} = CASE WHEN {newer} THEN EXCLUDED.{column} ELSE p.{column} END"
        for column in (field, f"{field}_us", f"{field}_event")
    )


# What every read and the upsert return of a row (``profiles_from_rows`` reads them).
_COLUMNS = (
    "p.user_id, p.leaderboard_id, p.period, p.display_name, p.metadata::text, "
    "GREATEST(p.display_name_us, p.metadata_us), p.version"
)
_RETURNING = f"RETURNING {_COLUMNS}"
_UPSERT_INTO = """
    INSERT INTO scores_entryprofile AS p (user_id, leaderboard_id, period, display_name, display_name_us,
        display_name_event, metadata, metadata_us, metadata_event, version)
"""
# Each field is replaced only by a newer one; a row neither field moves is left alone.
_UPSERT_CONFLICT = f"""
    ON CONFLICT (user_id, leaderboard_id, period) DO UPDATE SET
        {_take("display_name")}, {_take("metadata")}, version = p.version + 1
    WHERE {_newer("display_name")} OR {_newer("metadata")}
    {_RETURNING}
"""
_UPSERT_ARRAYS_SQL = f"""{_UPSERT_INTO}
    SELECT t.u, t.b, t.p, t.n, t.nu, t.ne, t.m::jsonb, t.mu, t.me, 1
    FROM unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[], %(names)s::text[],
                %(names_us)s::bigint[], %(names_by)s::text[], %(metas)s::text[], %(metas_us)s::bigint[],
                %(metas_by)s::text[]) AS t(u, b, p, n, nu, ne, m, mu, me)
    ORDER BY t.u, t.b, t.p
    {_UPSERT_CONFLICT}
"""
_CURRENT_SQL = f"""
    SELECT {_COLUMNS}
    FROM scores_entryprofile p
    JOIN unnest(%(users)s::text[], %(boards)s::bigint[], %(periods)s::text[]) AS t(u, b, p)
      ON p.user_id = t.u AND p.leaderboard_id = t.b AND p.period = t.p
"""


def profiles_from_rows(rows: Iterable[Sequence[Any]]) -> list[StoredProfile]:
    """Rows of the upsert's RETURNING (or of a read of the same columns) as records."""
    return [
        StoredProfile(RowKey(user, board, period), name, metadata, stamp or 0, version)
        for user, board, period, name, metadata, stamp, version in rows
    ]


def _key_order(key: RowKey) -> tuple[str, int, str]:
    return (key.user_id, key.leaderboard_id, key.period)


def profiles_upsert_arrays(cursor: CursorWrapper, changes: dict[RowKey, ProfileChange]) -> list[StoredProfile]:
    """Plain PostgreSQL: every change in one statement, rows in key order (after the
    score rows: every transaction locks the tables in one order)."""
    keys = sorted(changes, key=_key_order)
    rows = [changes[k] for k in keys]
    cursor.execute(
        _UPSERT_ARRAYS_SQL,
        {
            "users": [k.user_id for k in keys],
            "boards": [k.leaderboard_id for k in keys],
            "periods": [k.period for k in keys],
            "names": [r.display_name for r in rows],
            "names_us": [r.display_name_us for r in rows],
            "names_by": [r.display_name_event for r in rows],
            "metas": [r.metadata for r in rows],
            "metas_us": [r.metadata_us for r in rows],
            "metas_by": [r.metadata_event for r in rows],
        },
    )
    return profiles_from_rows(cursor.fetchall())


def _literal(value: str | int | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(int(value))
    return sql.Literal(value).as_string(connection.connection)


def profiles_upsert_values_sql(changes: dict[RowKey, ProfileChange]) -> str:
    """Citus: one shard's changes as a multi-row VALUES (router-planned to that shard)."""
    rows = []
    for key in sorted(changes, key=_key_order):
        c = changes[key]
        metadata = "NULL" if c.metadata is None else f"{_literal(c.metadata)}::jsonb"
        values = [
            _literal(key.user_id),
            _literal(key.leaderboard_id),
            _literal(key.period),
            _literal(c.display_name),
            _literal(c.display_name_us),
            _literal(c.display_name_event),
            metadata,
            _literal(c.metadata_us),
            _literal(c.metadata_event),
            "1",
        ]
        rows.append(f"({','.join(values)})")
    return f"{_UPSERT_INTO} VALUES {','.join(rows)} {_UPSERT_CONFLICT}"


def profiles_current(cursor: CursorWrapper, keys: Iterable[RowKey]) -> list[StoredProfile]:
    """The stored profiles of these rows (a read: no row locks)."""
    keys = sorted(keys, key=_key_order)
    if not keys:
        return []
    cursor.execute(
        _CURRENT_SQL,
        {
            "users": [k.user_id for k in keys],
            "boards": [k.leaderboard_id for k in keys],
            "periods": [k.period for k in keys],
        },
    )
    return profiles_from_rows(cursor.fetchall())


def profiles_of(*, leaderboard_id: int, period: str, user_ids: Sequence[str]) -> dict[str, bytes]:
    """The entry fields of those users who have a profile on this board and period (the
    database: the reads' fallback while Redis is away or rebuilding)."""
    if not user_ids:
        return {}
    with connection.cursor() as cursor:
        keys = [RowKey(user, leaderboard_id, period) for user in dict.fromkeys(user_ids)]
        return {p.key.user_id: p.fields for p in profiles_current(cursor, keys)}


def profiles_of_user(*, leaderboard_id: int, user_id: str) -> list[StoredProfile]:
    """The user's profiles on the board, every period (one shard on Citus)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM scores_entryprofile p WHERE p.user_id = %s AND p.leaderboard_id = %s",
            [user_id, leaderboard_id],
        )
        return profiles_from_rows(cursor.fetchall())


def profiles_page(*, leaderboard_id: int, period: str, after: str, limit: int) -> list[StoredProfile]:
    """A page of the board's profiles in user order (the Redis copy's rebuild)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_COLUMNS} FROM scores_entryprofile p "
            "WHERE p.leaderboard_id = %s AND p.period = %s AND p.user_id > %s ORDER BY p.user_id LIMIT %s",
            [leaderboard_id, period, after, limit],
        )
        return profiles_from_rows(cursor.fetchall())
