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
