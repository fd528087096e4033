"""A fast path for validating score submissions.

DRF serializers cost tens of microseconds per field, which at 1000 events a request is
most of a request's time. This path accepts only the plain, valid shape (JSON objects,
string ids, integer points in range) and otherwise returns None, so that the DRF
serializers, the single definition of the error messages, judge and name each problem.
"""

import re
from typing import Any

from rankings.models import Leaderboard

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_BATCH = 1000


def _event(item: Any, low: int, high: int) -> dict[str, Any] | None:
    # Any other field (a typo such as "eventid") is the serializers' to name.
    if type(item) is not dict or len(item) != 2 + ("event_id" in item):
        return None
    user_id, points = item.get("user_id"), item.get("points")
    if type(user_id) is not str or not _ID.fullmatch(user_id):
        return None
    if type(points) is not int or not low <= points <= high:
        return None
    if "event_id" not in item:
        return {"user_id": user_id, "points": points}
    event_id = item["event_id"]
    if type(event_id) is not str or not _ID.fullmatch(event_id):
        return None
    return {"user_id": user_id, "points": points, "event_id": event_id}


def valid_events(data: Any, board: Leaderboard) -> list[dict[str, Any]] | None:
    """The submission's events when all of it is valid; None means "ask the serializers"."""
    if type(data) is not dict:
        return None
    low, high = board.min_points, board.max_points
    if "events" not in data:
        single = _event(data, low, high)
        return None if single is None else [single]
    batch = data["events"]
    if type(batch) is not list or not 1 <= len(batch) <= MAX_BATCH or len(data) != 1:
        return None
    events = []
    for item in batch:
        event = _event(item, low, high)
        if event is None:
            return None
        events.append(event)
    return events
