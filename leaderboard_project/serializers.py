"""Pieces the API's serializers share."""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class KnownFieldsOnly:
    """A serializer mixin: an object holding a field the serializer does not have is a 400
    naming it (a typo such as ``"rest": "daily"`` must not pass silently)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                known = f"Unknown field; the fields are {', '.join(self.fields)}."
                raise serializers.ValidationError({name: [known] for name in unknown})
        return super().to_internal_value(data)


class JSONIntegerField(serializers.IntegerField):
    """An integer that was a JSON integer in the body: no string, float or boolean.

    DRF's IntegerField coerces ``"10"``, ``10.0`` and ``"10.0"`` to 10; the contract takes
    only JSON integers, so a client sending strings learns it from a 400 rather than by
    luck. The messages stay DRF's own.
    """

    def to_internal_value(self, data: Any) -> int:
        # `type(...) is int` because bool is a subclass of int: True must not count as 1.
        if type(data) is int:
            return data
        if isinstance(data, str) and len(data) > self.MAX_STRING_LENGTH:
            self.fail("max_string_length")
        self.fail("invalid")


class JSONStringField(serializers.CharField):
    """A string that was a JSON string in the body: DRF's CharField turns ``5`` into
    ``"5"`` and ``1.5`` into ``"1.5"``, so a client sending numbers as ids would learn of
    it only when the ids of two of its clients collide. DRF's own message."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
