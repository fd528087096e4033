"""Log lines carry an ISO-8601 UTC time, the level, the logger and the process."""

import logging
import logging.config

from django.conf import settings


def test_every_line_says_when_how_bad_and_who():
    # The formatter exactly as settings.LOGGING configures it.
    formatter_config = dict(settings.LOGGING["formatters"]["plain"])
    formatter = logging.config.DictConfigurator({"version": 1}).configure_formatter(formatter_config)
    record = logging.LogRecord("leaderboard.unit", logging.WARNING, __file__, 1, "a %s", ("message",), None)
    record.created, record.msecs, record.process = 1_796_400_000.25, 250.0, 42
    assert formatter.format(record) == "2026-12-04T16:00:00.250Z WARNING leaderboard.unit pid=42 a message"
