"""Who the public reads leave out: the SQL every ranking query of the database shares.

A hidden user (``rankings.models.HiddenUser``) keeps their score rows, so unhiding them
restores them at once; every query that ranks, counts or reads rows for the rank index
and the top-N adds ``NOT_HIDDEN``, and the Redis side keeps hidden users out of the rank
index (``rankings.cache``), so both agree: others' ranks close up, ``total`` leaves them out.
"""

from django.db import connection


def not_hidden_sql(alias: str = "scores_score") -> str:
    """The row of ``alias`` (a scores_score row) belongs to no hidden user of its board.

    An anti-join on the hidden users' unique (leaderboard_id, user_id) index: a probe per
    row read, nothing when the board hides nobody. On Citus the hidden users are a
    reference table, present on every node, so the shards answer it locally."""
    return (
        "NOT EXISTS (SELECT 1 FROM rankings_hiddenuser h "
        f"WHERE h.leaderboard_id = {alias}.leaderboard_id AND h.user_id = {alias}.user_id)"
    )


NOT_HIDDEN = not_hidden_sql()


def hidden_user_ids(*, leaderboard_id: int) -> list[str]:
    """The board's hidden users, from the database (the truth)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id FROM rankings_hiddenuser WHERE leaderboard_id = %s ORDER BY user_id", [leaderboard_id]
        )
        return [row[0] for row in cursor.fetchall()]
