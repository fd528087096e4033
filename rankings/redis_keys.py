"""Redis key names for one board and period; a hash tag keeps them on one cluster slot."""

from django.conf import settings


def _base(leaderboard_id: int, period: str) -> str:
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:{{{leaderboard_id}:{period}}}"


def top_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":top"


def index_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":idx"


def versions_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":ver"


def ready_key(leaderboard_id: int, period: str) -> str:
    return _base(leaderboard_id, period) + ":ready"


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
    """Set for one merge window when a root is scheduled: at most one root per window."""
    return _base(leaderboard_id, period) + ":root-due"


def boards_with_rounds_key() -> str:
    """Boards that had partials pushed: the sweeper looks at these for stranded rounds."""
    return f"{settings.LEADERBOARD_REDIS_PREFIX}:boards-with-rounds"
