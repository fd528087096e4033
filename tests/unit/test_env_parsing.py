"""Strict parsing of the settings' environment variables: a typo stops the start."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from leaderboard_project.settings import env_bool, env_float, env_int


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), (" on ", True), ("no", False), ("0", False)]
)
def test_it_reads_the_booleans_it_knows(monkeypatch, raw, expected):
    monkeypatch.setenv("LB_UNIT_FLAG", raw)
    assert env_bool("LB_UNIT_FLAG", not expected) is expected


def test_it_takes_unset_or_empty_as_the_default(monkeypatch):
    monkeypatch.delenv("LB_UNIT_FLAG", raising=False)
    assert env_bool("LB_UNIT_FLAG", True) is True
    monkeypatch.setenv("LB_UNIT_FLAG", "")
    assert env_bool("LB_UNIT_FLAG", True) is True


@pytest.mark.parametrize(("read", "raw"), [(env_bool, "ture"), (env_int, "16x"), (env_float, "fast")])
def test_it_refuses_a_value_it_cannot_read_naming_the_variable(monkeypatch, read, raw):
    monkeypatch.setenv("LB_UNIT_VALUE", raw)
    with pytest.raises(ImproperlyConfigured, match=f"LB_UNIT_VALUE={raw!r}"):
        read("LB_UNIT_VALUE", 1)
