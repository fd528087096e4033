"""The records that travel between the tiers, in one module: producers and consumers
import the same types.

Each is a ``msgspec.Struct`` with ``array_like=True``: on the wire it is as compact as a
plain list, but code reads ``event.user_id`` instead of ``event[1]``, and decoding
validates the shape. Messages carry a version, so a later format can be told apart.

- ``ScoreEvent`` / ``IngestBatch``: web tier -> ingest queue (a Celery task argument).
- ``ChangedRow``: the ingest transaction's output, one per (board, period, user) touched,
  with its ``ProfileCopy`` when the batch carried a display name or metadata for it.
- ``Row``: a ranked row, the unit of partials, of the top-N table and of its Redis copy.
- ``Partial``: one board's top-K candidates, pushed to the board's level 0 after a commit
  and merged level by level up to the board's root; ``Merged``: a merge step's result.
"""

from typing import Any

import msgspec

WIRE_VERSION = 1


class ScoreEvent(msgspec.Struct, array_like=True, frozen=True):
    leaderboard_id: int
    user_id: str
    points: int
    # The client's id, or one the web tier made ("~" + ...), never empty.
    event_id: str
    # When the web tier accepted the event (µs since the epoch): it orders "last"
    # writes and stamps reached_at, whatever order the workers apply events in.
    accepted_us: int
    # Who the entry is (scores.profiles), when the event says: a display name, and the
    # metadata object's compact JSON. Trailing and optional, so a batch from before them
    # reads as events without them.
    display_name: str | None = None
    metadata: str | None = None


class IngestBatch(msgspec.Struct, array_like=True, frozen=True):
    version: int
    events: list[ScoreEvent]


class Row(msgspec.Struct, array_like=True, frozen=True):
    user_id: str
    score: int
    reached_us: int
    # The score row's version: of two copies of one user's row, the higher is newer.
    version: int


class ProfileCopy(msgspec.Struct, array_like=True, frozen=True):
    """An entry profile as committed, for its Redis copy: the entry's two fields rendered,
    and the order key (newest stamp, then version) that lets only a newer copy replace it."""

    stamp_us: int
    version: int
    fields: bytes


class ChangedRow(msgspec.Struct, array_like=True, frozen=True):
    leaderboard_id: int
    period: str
    row: Row
    # The row's profile, when an event of the batch carried a display name or metadata.
    profile: ProfileCopy | None = None


class Partial(msgspec.Struct, array_like=True, frozen=True):
    version: int
    leaderboard_id: int
    period: str
    rows: list[Row]
    # The earliest accepted time among the events behind it: the root that publishes it
    # measures freshness (accepted -> visible in the top-N) from it.
    oldest_accepted_us: int


class Merged(msgspec.Struct, array_like=True, frozen=True):
    """The result of a merge step: the rows, and whether anyone fell on the way (then
    the root repairs from the database)."""

    rows: list[Row]
    fell: bool
    oldest_accepted_us: int  # 0 when the merge had no partial
    # The round's spans (by number) merged into it: a root forgets its round only when
    # its result covers every span, whatever a chord did on the way.
    covered: list[int]


_partial_decoder = msgspec.json.Decoder(Partial)
_encoder = msgspec.json.Encoder()


def ingest_batch_payload(events: list[ScoreEvent]) -> list[Any]:
    """The task argument for a batch: plain JSON data, as Celery's serializer wants."""
    return msgspec.to_builtins(IngestBatch(version=WIRE_VERSION, events=events))


def ingest_batch_from_payload(payload: Any) -> IngestBatch:
    batch = msgspec.convert(payload, IngestBatch)
    if batch.version != WIRE_VERSION:
        raise ValueError(f"ingest batch of wire version {batch.version}; this worker reads {WIRE_VERSION}")
    return batch


def partial_encode(partial: Partial) -> bytes:
    return _encoder.encode(partial)


def partial_decode(raw: bytes) -> Partial:
    return _partial_decoder.decode(raw)


def merged_from_json(data: Any) -> Merged:
    return msgspec.convert(data, Merged)


def rows_from_json(data: Any) -> list[Row]:
    """Rows stored as JSON lists (the top-N table, task results) back as ``Row``s."""
    return msgspec.convert(data, list[Row])


def rows_to_json(rows: list[Row]) -> list[Any]:
    return msgspec.to_builtins(rows)
