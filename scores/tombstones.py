"""Ingest's side of erasing a user (every board) or deleting one entry (one board): the
tombstones of the users in a batch.

An erased user's events accepted at or before the erasure (``erased_us``, on the clock
of ``ScoreEvent.accepted_us``) may still wait in a queue when the erasure runs: ingest
drops them, so they cannot bring the user back. Events accepted later count again (the
user came back), but only once the erasure has finished: until then the background task
may still be deleting the user's rows, and a later event applied to an old row would be
deleted with it. Such a batch waits (``ErasureInProgress``, retried like an outage);
erasures take seconds.
"""

from dataclasses import dataclass, field

from django.db.backends.utils import CursorWrapper


class ErasureInProgress(Exception):
    """A batch holds an event of a user whose erasure has not finished: retry it later."""


@dataclass(frozen=True)
class Tombstone:
    erased_us: int
    finished: bool


@dataclass(frozen=True)
class Tombstones:
    """A batch's tombstones: per user (erased everywhere) and per (user, board)."""

    users: dict[str, Tombstone] = field(default_factory=dict)
    entries: dict[tuple[str, int], Tombstone] = field(default_factory=dict)

    def of(self, user_id: str, leaderboard_id: int) -> list[Tombstone]:
        found = [self.users.get(user_id), self.entries.get((user_id, leaderboard_id))]
        return [tombstone for tombstone in found if tombstone is not None]


def tombstones_read(cursor: CursorWrapper, user_ids: str | list[str]) -> Tombstones:
    """The tombstones of these users: one lookup on each table's key, in the caller's
    transaction (so the task's wait for older transactions covers this batch). ``user_ids``
    is a list or a PostgreSQL array literal (``scores.services._text_array``)."""
    cursor.execute(
        """SELECT user_id, NULL, erased_us, finished_at IS NOT NULL FROM scores_eraseduser
            WHERE user_id = ANY(%s::text[])
           UNION ALL
           SELECT user_id, leaderboard_id, deleted_us, finished_at IS NOT NULL FROM scores_deletedentry
            WHERE user_id = ANY(%s::text[])""",
        [user_ids, user_ids],
    )
    found = Tombstones()
    for user_id, leaderboard_id, cut_us, finished in cursor.fetchall():
        if leaderboard_id is None:
            found.users[user_id] = Tombstone(cut_us, finished)
        else:
            found.entries[(user_id, leaderboard_id)] = Tombstone(cut_us, finished)
    return found


def is_erased(tombstones: list[Tombstone], accepted_us: int) -> bool:
    """Whether an event accepted then is erased (dropped) by any of its tombstones; raises
    while an erasure or entry deletion of a later event's user is still running."""
    if any(accepted_us <= tombstone.erased_us for tombstone in tombstones):
        return True
    for tombstone in tombstones:
        if not tombstone.finished:
            raise ErasureInProgress(f"erasure of a user of this batch is still running (at {tombstone.erased_us})")
    return False
