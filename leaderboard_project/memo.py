"""A per-process memo with a time to live, for small rows read on every request or batch
(boards, API keys) that change rarely."""

import time
from typing import Any, Final

# What ``get`` answers for a key it does not hold (None may be a remembered value).
MISSING: Final = object()


class TtlMemo:
    """A plain dict under the GIL, so gunicorn's threads share it without a lock: a race
    only costs one more lookup. Past ``max_entries`` it starts over rather than grow."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return MISSING
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_seconds, value)

    def clear(self) -> None:
        self._entries.clear()
