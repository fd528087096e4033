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
