"""Test settings: the real services, with their own Redis databases and queue names so a
test run never meets a running stack's data or messages."""

import os

os.environ.setdefault("LEADERBOARD_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("LEADERBOARD_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LEADERBOARD_QUEUE_PREFIX", "lbtest")
os.environ.setdefault("LEADERBOARD_REDIS_PREFIX", "lbtest")
# A small fan-in, so the tests' rounds build trees of several chord levels, and a short
# takeover, so the fault tests see a dead root's round taken over within seconds.
os.environ.setdefault("LEADERBOARD_MERGE_FAN_IN", "3")
os.environ.setdefault("LEADERBOARD_ROUND_TAKEOVER_MS", "3000")
# Messages pile up on the test queues while no worker runs (API tests): admission control
# is tested on its own, with its bound lowered there.
os.environ.setdefault("LEADERBOARD_ADMISSION_MAX_BACKLOG_EVENTS", "1000000000")

from leaderboard_project.settings import *  # noqa: F403

# The delivery-limit test publishes a task that kills its worker (tests/poison.py).
CELERY_IMPORTS = (*CELERY_IMPORTS, "tests.poison")  # noqa: F405
