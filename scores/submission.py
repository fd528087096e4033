"""The score endpoint's request body as typed records, decoded and validated by msgspec.

``POST …/scores`` takes one event ``{user_id, points, event_id?, display_name?, metadata?}``
or a batch ``{events: [...]}`` of 1-1000. msgspec decodes the raw body straight into these
structs, checking types (points a JSON integer: never a string, float or boolean), the id
alphabet, the display name and unknown fields in one pass of a few microseconds; only the
board's points range and the metadata's encoded size are left to check. Whatever these
types refuse goes to the DRF serializers (``scores.serializers``), the one place that
words each 400.
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import msgspec

from rankings.models import Leaderboard
from scores.profiles import DISPLAY_NAME_PATTERN, METADATA_MAX_KEYS, display_name_problem, metadata_problem

MAX_BATCH = 1000

# The id alphabet of rankings.models.id_validator (\A…\Z: "$" would let a trailing newline by).
_Id = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9_.:-]{1,64}\Z")]


_DisplayName = Annotated[str, msgspec.Meta(pattern=DISPLAY_NAME_PATTERN)]
# Its encoded size is checked after decoding (metadata_problem).
_Metadata = Annotated[dict[str, Any], msgspec.Meta(max_length=METADATA_MAX_KEYS)]


class SubmittedEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user_id: _Id
    points: int
    # UNSET, not None: an explicit null is a bad value for the serializers to name.
    event_id: _Id | msgspec.UnsetType = msgspec.UNSET
    display_name: _DisplayName | msgspec.UnsetType = msgspec.UNSET
    metadata: _Metadata | msgspec.UnsetType = msgspec.UNSET


class SubmittedBatch(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    events: Annotated[list[SubmittedEvent], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


_event_decoder = msgspec.json.Decoder(SubmittedEvent)
_batch_decoder = msgspec.json.Decoder(SubmittedBatch)


def _in_range(events: Sequence[SubmittedEvent], board: Leaderboard) -> bool:
    """The checks msgspec's types leave: the board's points range, the metadata's size,
    and (for a body parsed by Python's json, which lets lone surrogates by) valid text."""
    low, high = board.min_points, board.max_points
    return all(
        low <= event.points <= high
        and (event.display_name is msgspec.UNSET or display_name_problem(event.display_name) is None)
        and (event.metadata is msgspec.UNSET or metadata_problem(event.metadata) is None)
        for event in events
    )


def submission_decode(body: bytes, board: Leaderboard) -> list[SubmittedEvent] | None:
    """The events of a raw JSON body when all of it is valid; None means "ask the serializers"."""
    try:
        events = [_event_decoder.decode(body)]
    except msgspec.DecodeError:
        # A batch's first key is "events", unknown to the single shape: that refusal is cheap.
        try:
            events = _batch_decoder.decode(body).events
        except msgspec.DecodeError:
            return None
    return events if _in_range(events, board) else None


def submission_convert(data: Any, board: Leaderboard) -> list[SubmittedEvent] | None:
    """The same for a body already parsed (the DRF path)."""
    if type(data) is not dict:
        return None
    shape = SubmittedBatch if "events" in data else SubmittedEvent
    try:
        converted = msgspec.convert(data, shape)
    except msgspec.ValidationError:
        return None
    events = converted.events if isinstance(converted, SubmittedBatch) else [converted]
    return events if _in_range(events, board) else None


def submitted_event(fields: Mapping[str, Any]) -> SubmittedEvent:
    """A record from the serializers' validated data (or any mapping of the same fields)."""
    return SubmittedEvent(**fields)
