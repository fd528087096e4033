"""Keeping a board's rank index equal to the database: the chunked rebuild and the checks.

Rebuild: chunks of rows in the ranking index's order (keyset pagination on
``score_ranking_idx``: sort_key, reached_at, user_id) are loaded into shadow keys, each
chunk its own task well inside the task time limits, with the cursor and progress in a
Redis hash. While the state exists every live update is mirrored into the shadow, so a
rebuild resumed after its worker died (its short claim expired) continues from its
cursor and misses nothing; the last chunk swaps the shadow in atomically.

Checks (run by the per-board reconcile): a rolling verification of one slice of users
per run against the versions hash, repairing the users that differ; and the index's
counters (ZCARD and the running sum of versions kept by the update script) against the
database's count(*) and sum(version), a mismatch seen twice with the database unchanged
in between starting a rebuild.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from redis import Redis

from leaderboard_project import metrics
from rankings import cache, redis_keys
from rankings.models import Leaderboard
from rankings.ordering import from_micros, index_member, to_micros
from rankings.selectors import db_rows_of, is_desc
from rankings.visibility import NOT_HIDDEN, hidden_user_ids
from scores.profiles import profiles_page
from tasks.messages import Row

logger = logging.getLogger(__name__)

BUILD_CHUNK_TASK = "tasks.ranking.index_build_chunk"
# Rows per database fetch; a chunk task loads several fetches up to its row budget.
_FETCH_ROWS = 2000
_OFFSET = 2**63


def build_chunk_rows() -> int:
    """Rows per rebuild task (see the setting)."""
    return settings.LEADERBOARD_INDEX_BUILD_CHUNK_ROWS


def build_claim_ttl() -> int:
    """A rebuild's claim outlives one chunk task (the hard limit) plus its queueing; a
    dead rebuild is resumed after at most this long instead of blocking for 900 s."""
    return settings.CELERY_TASK_TIME_LIMIT + 30


def verify_slice_rows() -> int:
    return settings.LEADERBOARD_INDEX_VERIFY_SLICE


def _keyset(cursor: str, desc: bool) -> tuple[int, object, str] | None:
    """The (sort_key, reached_at, user_id) a member encodes; sort_key is the member's
    sort value by construction (the score negated on desc boards)."""
    if not cursor:
        return None
    return int(cursor[:20]) - _OFFSET, from_micros(int(cursor[20:37])), cursor[37:]


def rows_after(*, leaderboard: Leaderboard, period: str, cursor: str, limit: int) -> list[Row]:
    """The next ``limit`` rows after ``cursor`` (a member) in rank order: an index range
    scan on score_ranking_idx, whatever the board's size."""
    after = _keyset(cursor, is_desc(leaderboard))
    where = "AND (sort_key, reached_at, user_id) > (%s, %s, %s)" if after else ""
    with connection.cursor() as db:
        db.execute(
            f"""SELECT user_id, score, reached_at, version FROM scores_score
                WHERE leaderboard_id = %s AND period = %s AND {NOT_HIDDEN} {where}
                ORDER BY sort_key, reached_at, user_id LIMIT %s""",
            [leaderboard.id, period, *(after or ()), limit],
        )
        return [Row(u, score, to_micros(reached), version) for u, score, reached, version in db.fetchall()]


def db_counters(*, leaderboard: Leaderboard, period: str) -> tuple[int, int]:
    """count(*) and sum(version) of the board's rows: one scan of its rows in the heap
    (version is not in the index), a few hundred ms at 1M rows; run only for boards that
    changed since their last reconcile, and for the slow sweep."""
    with connection.cursor() as db:
        db.execute(
            "SELECT count(*), COALESCE(sum(version), 0) FROM scores_score "
            f"WHERE leaderboard_id = %s AND period = %s AND {NOT_HIDDEN}",
            [leaderboard.id, period],
        )
        count, vsum = db.fetchone()
    return int(count), int(vsum)


def db_count(leaderboard: Leaderboard, period: str) -> int:
    """count(*) of the board's rows: an index-only scan of its range of score_ranking_idx."""
    with connection.cursor() as db:
        db.execute(
            f"SELECT count(*) FROM scores_score WHERE leaderboard_id = %s AND period = %s AND {NOT_HIDDEN}",
            [leaderboard.id, period],
        )
        return int(db.fetchone()[0])


# --- the chunked rebuild -------------------------------------------------------------


def profiles_load(client: Redis, *, leaderboard_id: int, period: str, page: int = 1000) -> int:
    """Copy the period's profiles from the database into Redis, page by page (each only
    over an older copy: ingest hand-offs meanwhile keep theirs); the number copied."""
    after, copied = "", 0
    while True:
        found = profiles_page(leaderboard_id=leaderboard_id, period=period, after=after, limit=page)
        copies = [(p.key.user_id, p.copy) for p in found]
        cache.profiles_apply(client, leaderboard_id, period, copies)
        copied += len(found)
        if len(found) < page:
            return copied
        after = found[-1].key.user_id


def index_build_claim(*, leaderboard: Leaderboard, period: str, chunk_rows: int | None = None) -> str | None:
    """Claim the board's rebuild (a new one, or a dead one to resume); its token or None
    while a live worker holds it."""
    client = cache.redis_client()
    # Redis may have lost the board's hidden set with its index (a flush): put it back from
    # the database before any row is loaded, so the chunks and live updates skip them.
    # Only adds: taking a user out of the set is unhide's job.
    cache.hidden_add(client, leaderboard.id, hidden_user_ids(leaderboard_id=leaderboard.id))
    # And the profiles, which readers take from Redis once the index is ready.
    profiles_load(client, leaderboard_id=leaderboard.id, period=period)
    # The total is an estimate for progress (rows come and go meanwhile); a resumed
    # rebuild keeps the one it started with.
    total = 0 if cache.index_build_state(client, leaderboard.id, period) else db_count(leaderboard, period)
    rows = chunk_rows or build_chunk_rows()
    claimed = cache.index_build_claim(client, leaderboard.id, period, build_claim_ttl(), total, rows)
    if claimed is None:
        return None
    token, status = claimed
    logger.info("rank index rebuild of %s: %s (token %s)", leaderboard.slug, status, token)
    return token


def index_build_run(*, leaderboard: Leaderboard, period: str, token: str, budget_seconds: float) -> str:
    """Load one chunk (up to the build's chunk_rows, within the time budget): "more",
    "done", or "lost" when the rebuild is no longer this token's (taken over, flushed)."""
    client = cache.redis_client()
    state = cache.index_build_state(client, leaderboard.id, period)
    if state is None or state["token"] != token:
        return "lost"
    desc = is_desc(leaderboard)
    cursor, budget_rows = state["cursor"], int(state["chunk_rows"])
    deadline = time.monotonic() + budget_seconds
    loaded = 0
    while loaded < budget_rows and time.monotonic() < deadline:
        asked = min(_FETCH_ROWS, budget_rows - loaded)
        rows = rows_after(leaderboard=leaderboard, period=period, cursor=cursor, limit=asked)
        cache.index_build_load(client, leaderboard.id, period, rows, desc)
        if rows:
            cursor = index_member(rows[-1], desc)
        if not cache.index_build_advance(client, leaderboard.id, period, token, cursor, len(rows), build_claim_ttl()):
            return "lost"
        loaded += len(rows)
        if len(rows) < asked:
            if not cache.index_build_finish(client, leaderboard.id, period, token, time.time()):
                return "lost"
            metrics.rank_index_rebuilt(leaderboard.slug)
            return "done"
    return "more"


@dataclass(frozen=True)
class BuildProgress:
    running: bool  # a build's state exists
    active: bool  # a worker holds it now
    done: int
    total: int
    chunks: int


def index_build_progress(client: Redis, leaderboard_id: int, period: str) -> BuildProgress | None:
    state = cache.index_build_state(client, leaderboard_id, period)
    if state is None:
        return None
    return BuildProgress(
        True,
        cache.index_build_active(client, leaderboard_id, period),
        int(state.get("done", 0)),
        int(state.get("total", 0)),
        int(state.get("chunks", 0)),
    )


# --- the checks ----------------------------------------------------------------------


def index_verify_slice(*, leaderboard: Leaderboard, period: str) -> int:
    """Check the next slice of users (rank order, from the stored cursor) against the
    index and repair those that differ; returns how many were repaired.

    A user differs when the index holds another version (a lost or reordered write, a
    row deleted and made again), no entry, or an entry in this slice's range that the
    database does not have there. Differing users are read again from the database and
    set only if their entry is still what the check saw: an update that came in since
    is newer than both reads and is kept.
    """
    client = cache.redis_client()
    desc = is_desc(leaderboard)
    cursor_key = redis_keys.verify_cursor_key(leaderboard.id, period)
    cursor = (client.get(cursor_key) or b"").decode()
    size = verify_slice_rows()
    rows = rows_after(leaderboard=leaderboard, period=period, cursor=cursor, limit=size)
    last = len(rows) < size
    expected = {row.user_id: f"{row.version}|{index_member(row, desc)}" for row in rows}
    users = list(expected)
    held = dict(zip(users, cache.index_held(client, leaderboard.id, period, users), strict=True))
    low = f"({cursor}" if cursor else "-"
    high = "+" if last else f"[{index_member(rows[-1], desc)}"
    in_range = cache.index_members_between(client, leaderboard.id, period, low, high)
    expected_members = {value.split("|", 1)[1] for value in expected.values()}
    differing = {user for user in users if held[user] != expected[user]}
    # Members the database does not have in this range: their users stand elsewhere, or nowhere.
    strays = sorted({member[37:] for member in in_range if member not in expected_members} - set(held))
    held.update(zip(strays, cache.index_held(client, leaderboard.id, period, strays), strict=True))
    suspects = sorted(differing | set(strays))
    repaired = 0
    if suspects:
        fresh = db_rows_of(leaderboard=leaderboard, period=period, user_ids=suspects)
        fixes = []
        for user in suspects:
            row = fresh.get(user)
            wanted = f"{row.version}|{index_member(row, desc)}" if row else ""
            if held[user] != wanted:
                fixes.append((user, held[user], wanted))
        repaired = cache.index_force(client, leaderboard.id, period, fixes)
        if repaired:
            logger.warning("rank index of %s: %d users repaired by the slice check", leaderboard.slug, repaired)
    client.set(cursor_key, "" if last else index_member(rows[-1], desc))
    return repaired


def index_counters_agree(*, leaderboard: Leaderboard, period: str) -> bool | None:
    """Compare the index's counters with the database's: True when they agree, False
    when they disagreed twice with the database unchanged in between (the index is
    stale: rebuild it), None on a first disagreement (maybe a hand-off in flight: the
    board is queued for another look)."""
    client = cache.redis_client()
    index_figures = cache.index_counters(client, leaderboard.id, period)
    db_figures = db_counters(leaderboard=leaderboard, period=period)
    suspect_key = redis_keys.suspect_key(leaderboard.id, period)
    if index_figures == db_figures:
        client.delete(suspect_key)
        return True
    seen = f"{db_figures[0]}|{db_figures[1]}"
    if (client.get(suspect_key) or b"").decode() == seen:
        client.delete(suspect_key)
        logger.warning(
            "rank index of %s is stale: %s members/version sum, database %s", leaderboard.slug, index_figures, seen
        )
        return False
    client.set(suspect_key, seen, ex=3600)
    cache.boards_touch(client, [(leaderboard.id, period)])
    return None
