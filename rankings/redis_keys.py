"""Redis key names for one board and period; a hash tag keeps every key of one board (all
its periods, and its set of hidden users) on one cluster slot, so one Lua script may
touch the board's hidden set and any period's index together."""

from django.conf import settings


def board_prefix(leaderboard_id: int) -> str:
    """What every key of the board starts with (the board's deletion scans for it)."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:{{{leaderboard_id}}}"


def _base(leaderboard_id: int, period: str) -> str:
    return f"{board_prefix(leaderboard_id)}:{period}"


def period_keys_pattern(leaderboard_id: int, period: str) -> str:
    """A SCAN pattern for every key of one (board, period) (a purged period's)."""
    return _base(leaderboard_id, period) + ":*"


def hidden_key(leaderboard_id: int) -> str:
    """The board's hidden users (a set, for every period): the index updates skip them.
    The database (rankings_hiddenuser) is the truth; a rebuild restores the set from it."""
    return board_prefix(leaderboard_id) + ":hidden"


def top_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":top"


def index_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":idx"


def versions_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":ver"


def ready_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":ready"


def profiles_key(leaderboard_id: int, period: str) -> str:
    """Entry profiles (scores.profiles): user -> the entry's display_name and metadata
    fields, rendered. Complete whenever the rank index is ready (its rebuild loads them)."""
    return _base(leaderboard_id, period) + ":profiles"


def profile_order_key(leaderboard_id: int, period: str) -> str:
    """user -> "stamp:version" of the profile held, so an older copy never replaces it."""
    return _base(leaderboard_id, period) + ":profile-order"


def repair_asked_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":repair-asked"


def building_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":building"


# The merge levels (see rankings/rounds.py).
def pending_key(leaderboard_id: int, period: str) -> str:
    """Level 0: partials pushed after ingest commits, waiting for the board's next root."""
    return _base(leaderboard_id, period) + ":pending"


def inflight_key(leaderboard_id: int, period: str, token: str) -> str:
    """A round's partials, renamed from the pending list when its root claimed them."""
    return _base(leaderboard_id, period) + f":round:{token}"


def rounds_key(leaderboard_id: int, period: str) -> str:
    """Rounds claimed and not finished: token -> claim time (ms); old ones are taken over."""
    return _base(leaderboard_id, period) + ":rounds"


def root_due_key(leaderboard_id: int, period: str) -> str:
    """Held from a root's scheduling until it starts: at most one root pending per board."""
    return _base(leaderboard_id, period) + ":root-due"


def boards_with_rounds_key() -> str:
    """Boards that had partials pushed: the sweeper looks at these for stranded rounds."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:boards-with-rounds"


# Keeping the rank index honest (see rankings/index_health.py).
def stats_key(leaderboard_id: int, period: str) -> str:
    """Running checksum of the rank index: "vsum" = sum of the versions it holds."""
    return _base(leaderboard_id, period) + ":stats"


def build_key(leaderboard_id: int, period: str) -> str:
    """A chunked rebuild's state (token, cursor, done, total, chunk_rows, chunks); while it
    exists, every index update is mirrored into the shadow keys the rebuild fills."""
    return _base(leaderboard_id, period) + ":build"


def build_last_key(leaderboard_id: int, period: str) -> str:
    """The last finished rebuild (rows, chunks, finished_at), for operators."""
    return _base(leaderboard_id, period) + ":build-last"


def shadow_index_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":idx-next"


def shadow_versions_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":ver-next"


def shadow_stats_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":stats-next"


def verify_cursor_key(leaderboard_id: int, period: str) -> str:
    """Where the rolling verification of slices resumes (the last member checked)."""
    return _base(leaderboard_id, period) + ":verify-cursor"


def suspect_key(leaderboard_id: int, period: str) -> str:
    """The database's (count, version sum) when the index's counters last disagreed."""
    return _base(leaderboard_id, period) + ":suspect"


def touched_key() -> str:
    """Boards whose rank index was written since the reconcile last took the set."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:boards-touched"


def reconcile_sweep_cursor_key() -> str:
    """The last board id the reconcile's slow sweep over every board reached."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:reconcile-sweep-cursor"


def reconciled_key() -> str:
    """board:period -> when its reconcile last ran (unix seconds)."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:boards-reconciled"


def schedule_run_key(schedule_name: str) -> str:
    """Held for most of a beat schedule's interval by the run that claimed it."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:schedule-run:{schedule_name}"


def aside_key(leaderboard_id: int, period: str) -> str:
    """The last partials of the (board, period) that no root could read, kept to look at."""
    return _base(leaderboard_id, period) + ":aside"


def asides_key() -> str:
    """How many partials were set aside, per "board|period" (the admin's pipeline page)."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:partials-aside"
