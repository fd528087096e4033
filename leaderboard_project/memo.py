"""A per-process memo with a time to live, for small rows read on every request or batch
(boards, API keys) that change rarely."""

import time
from collections.abc import Callable
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


class SharedVersionWatch:
    """Makes memos of rows that other processes change follow those changes.

    Every process that changes the rows bumps one shared version (``read`` returns it,
    e.g. a Redis counter); a process that looked at it more than ``interval_seconds`` ago
    reads it again before trusting its memos, and drops them when it moved. So a change
    reaches every process within ``interval_seconds`` (not the memos' TTL), for at most
    one read of the version per interval, whatever the request rate.

    When the version cannot be read (``read`` raises), the memos are dropped too: without
    the version, a copy can only be trusted for the interval it was checked in.
    """

    def __init__(self, read: Callable[[], object], memos: list[TtlMemo], interval_seconds: float) -> None:
        self._read = read
        self._memos = memos
        self.interval_seconds = interval_seconds
        self._next_check = 0.0
        self._seen: object = MISSING

    def due(self) -> bool:
        """Whether the next ``check`` reads the version (a round trip) rather than returning."""
        return time.monotonic() >= self._next_check

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.interval_seconds
        try:
            version = self._read()
        except Exception:  # noqa: BLE001 - any failure to read means "unknown": forget the copies
            version = MISSING
        if version is MISSING or version != self._seen:
            self.forget()
        self._seen = version

    def forget(self) -> None:
        """Drop the memos now (this process changed the rows itself)."""
        for memo in self._memos:
            memo.clear()
