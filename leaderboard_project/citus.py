"""How the tables spread over a Citus cluster: one list read by the distribute command
and by the test that checks the schema obeys the Citus rules."""

# table -> distribution column. Scores and processed events are colocated by user.
DISTRIBUTED: dict[str, str] = {
    "scores_score": "user_id",
    "scores_processedevent": "user_id",
    "rankings_topn": "leaderboard_id",
    # Erasure and entry-deletion tombstones: ingest reads a user's in the same
    # single-shard transaction.
    "scores_eraseduser": "user_id",
    "scores_deletedentry": "user_id",
    # Display names and metadata: ingest writes a user's in the same transaction.
    "scores_entryprofile": "user_id",
}
COLOCATED_WITH: dict[str, str] = {
    "scores_processedevent": "scores_score",
    "scores_eraseduser": "scores_score",
    "scores_deletedentry": "scores_score",
    "scores_entryprofile": "scores_score",
}
# Small tables copied to every node; foreign keys may point at them. Hidden users are few
# and joined (NOT EXISTS) by every ranking query of a board, on every shard.
REFERENCE: list[str] = ["rankings_leaderboard", "scores_apikey", "rankings_hiddenuser"]
