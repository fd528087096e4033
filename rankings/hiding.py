"""Hiding a user on a board (a cheater): out of every public read, their events still applied.

The database is the truth (``HiddenUser``). Every ranking query of the database leaves
hidden users out (``rankings.visibility.NOT_HIDDEN``); on the Redis side the user is taken
OUT of the rank index, so a read stays one Lua call and ``total`` stays a ZCARD, and the
board's hidden set makes every later index update skip them (``rankings.cache``). The
user's score rows keep being updated, so unhiding puts their current rows back at once.

Ordering is what makes it exact under concurrent writes:
- hide: commit the row, then add the user to the Redis set, then read the periods the
  user has rows in. A hand-off the set did not stop came from a transaction that
  committed before the SADD, so its row's period is read here and removed from that
  period's index; every later hand-off is skipped atomically by the index script.
- unhide: delete the row, then take the user out of the set, then read their rows and
  profiles and apply them (newest version wins). A hand-off the set still skipped came from a
  transaction that committed before the SREM, so its row is in what is read here.
- each touched period's top-N is then recomputed from the database under its row lock
  (``topn_rebuild``), as the merge roots take it: a root that merges a hidden candidate
  finds no row for it (``db_rows_of`` leaves hidden users out), counts it as fallen and
  repairs from the database too.
The Redis steps run after the commit and read the database's state under a session-level
advisory lock per (board, user), so a hide and an unhide that race end in the state of
whichever committed last.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from rankings import cache
from rankings.models import HiddenUser, Leaderboard
from rankings.ordering import to_micros
from rankings.selectors import is_desc
from rankings.services import topn_rebuild
from scores.profiles import profiles_of_user
from tasks.messages import Row


@contextmanager
def _user_lock(leaderboard_id: int, user_id: str) -> Iterator[None]:
    key = f"hide:{leaderboard_id}:{user_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def user_rows(*, leaderboard_id: int, user_id: str) -> dict[str, Row]:
    """The user's rows on the board, by period (hidden or not): one shard on Citus."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT period, user_id, score, reached_at, version FROM scores_score "
            "WHERE user_id = %s AND leaderboard_id = %s",
            [user_id, leaderboard_id],
        )
        return {period: Row(u, score, to_micros(reached), v) for period, u, score, reached, v in cursor.fetchall()}


def user_hide(*, leaderboard: Leaderboard, user_id: str) -> None:
    """Hide the user on every period of the board (idempotent)."""
    HiddenUser.objects.bulk_create([HiddenUser(leaderboard=leaderboard, user_id=user_id)], ignore_conflicts=True)
    # Redis follows once the row is committed (at once outside a transaction; the admin
    # saves inside one).
    transaction.on_commit(lambda: user_visibility_sync(leaderboard=leaderboard, user_id=user_id))


def user_unhide(*, leaderboard: Leaderboard, user_id: str) -> None:
    """Show the user again, with their current scores (idempotent)."""
    HiddenUser.objects.filter(leaderboard=leaderboard, user_id=user_id).delete()
    transaction.on_commit(lambda: user_visibility_sync(leaderboard=leaderboard, user_id=user_id))


def user_visibility_sync(*, leaderboard: Leaderboard, user_id: str) -> bool:
    """Make the board's Redis side and top-Ns follow the database for this user; returns
    whether the user is hidden. Reads the truth under the user's lock, so when a hide and
    an unhide race, the sync that runs last (after both commits) sets the final state."""
    client = cache.redis_client()
    with _user_lock(leaderboard.id, user_id):
        hidden = HiddenUser.objects.filter(leaderboard=leaderboard, user_id=user_id).exists()
        if hidden:
            cache.hidden_add(client, leaderboard.id, [user_id])
            # Only the periods the user has a row in can hold them in an index or a top-N.
            for period in sorted(user_rows(leaderboard_id=leaderboard.id, user_id=user_id)):
                cache.index_remove_user(client, leaderboard.id, period, user_id)
                topn_rebuild(leaderboard=leaderboard, period=period)
        else:
            cache.hidden_remove(client, leaderboard.id, [user_id])
            desc = is_desc(leaderboard)
            # Profiles first: hand-offs skipped theirs while the user was hidden.
            for profile in profiles_of_user(leaderboard_id=leaderboard.id, user_id=user_id):
                cache.profiles_apply(client, leaderboard.id, profile.key.period, [(user_id, profile.copy)])
            for period, row in sorted(user_rows(leaderboard_id=leaderboard.id, user_id=user_id).items()):
                cache.index_apply(client, leaderboard.id, period, [row], desc)
                topn_rebuild(leaderboard=leaderboard, period=period)
    return hidden
