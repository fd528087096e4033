"""Ingest's side of erasing a user: the tombstones of the users in a batch.

An erased user's events accepted at or before the erasure (``erased_us``, on the clock
of ``ScoreEvent.accepted_us``) may still wait in a queue when the erasure runs: ingest
drops them, so they cannot bring the user back. Events accepted later count again (the
user came back), but only once the erasure has finished: until then the background task
may still be deleting the user's rows, and a later event applied to an old row would be
deleted with it. Such a batch waits (``ErasureInProgress``, retried like an outage);
erasures take seconds.
"""

from dataclasses import dataclass

from django.db.backends.utils import CursorWrapper


class ErasureInProgress(Exception):
    """A batch holds an event of a user whose erasure has not finished: retry it later."""


@dataclass(frozen=True)
class Tombstone:
    erased_us: int
    finished: bool


def tombstones_read(cursor: CursorWrapper, user_ids: str | list[str]) -> dict[str, Tombstone]:
    """The tombstones of these users: one lookup on the table's key, in the caller's
    transaction (so the task's wait for older transactions covers this batch). ``user_ids``
    is a list or a PostgreSQL array literal (``scores.services._text_array``)."""
    cursor.execute(
        "SELECT user_id, erased_us, finished_at IS NOT NULL FROM scores_eraseduser WHERE user_id = ANY(%s::text[])",
        [user_ids],
    )
    return {user_id: Tombstone(erased_us, finished) for user_id, erased_us, finished in cursor.fetchall()}


def is_erased(tombstone: Tombstone | None, accepted_us: int) -> bool:
    """Whether an event accepted then is erased (dropped); raises while an erasure of a
    later event's user is still running."""
    if tombstone is None:
        return False
    if accepted_us <= tombstone.erased_us:
        return True
    if not tombstone.finished:
        raise ErasureInProgress(f"erasure of a user of this batch is still running (erased at {tombstone.erased_us})")
    return False
