"""Management commands: create_api_key and install_schedules."""

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from leaderboard_project.celery import app as celery_app
from scores.models import ApiKey, hash_api_key
from tasks.queues import all_queue_names
from tasks.schedules import SCHEDULES
from tests.conftest import bearer

ROOT = Path(__file__).resolve().parent.parent
KEY_PATTERN = re.compile(r"lbk_[A-Za-z0-9_-]{20,}")


def create_api_key(*args: str) -> str:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def submit(api, key: str, slug: str):
    return bearer(api, key).post(f"/api/v1/leaderboards/{slug}/scores", {"user_id": "a", "points": 1}, format="json")


def test_it_makes_keys_of_one_tenant_count_together(db, make_board):
    board = make_board(slug="tenanted")
    first = ApiKey.objects.get(key_hash=hash_api_key(create_api_key("--name", "a", "--tenant", "acme").strip()))
    second = ApiKey.objects.get(key_hash=hash_api_key(create_api_key("--name", "b", "--tenant", "acme").strip()))
    assert first.admission_tenant == second.admission_tenant == "t:acme"
    # Without one: a key of one board counts as that board, a key of every board as itself.
    scoped = ApiKey.objects.get(
        key_hash=hash_api_key(create_api_key("--name", "c", "--leaderboard", "tenanted").strip())
    )
    assert scoped.admission_tenant == f"board:{board.id}"
    lone = ApiKey.objects.get(key_hash=hash_api_key(create_api_key("--name", "d").strip()))
    assert lone.admission_tenant == f"key:{lone.pk}"
    with pytest.raises(CommandError, match="64"):
        create_api_key("--name", "e", "--tenant", "x" * 65)


def test_it_prints_only_the_key(db):
    out = create_api_key("--name", "x")
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert KEY_PATTERN.fullmatch(lines[0]), out
    key = ApiKey.objects.get(key_hash=hash_api_key(lines[0]))
    assert (key.name, key.leaderboard_id, key.is_admin, key.is_active) == ("x", None, False, True)
    assert key.prefix == lines[0][: len(key.prefix)]


def test_it_prints_only_the_key_on_the_real_stdout(transactional_db):
    """Run as a user would, in its own process: stdout is the key, nothing else."""
    env = dict(os.environ)
    env.update({"DJANGO_SETTINGS_MODULE": "tests.settings", "LEADERBOARD_DB_NAME": connection.settings_dict["NAME"]})
    done = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "--name", "cli"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and KEY_PATTERN.fullmatch(done.stdout.strip()), done.stdout
    assert ApiKey.objects.filter(name="cli", key_hash=hash_api_key(done.stdout.strip())).exists()


def test_it_makes_keys_that_differ(db):
    first = create_api_key("--name", "one").strip()
    second = create_api_key("--name", "two").strip()
    assert first != second


def test_it_makes_a_key_that_writes(db, api, make_board):
    board = make_board()
    key = create_api_key("--name", "writer").strip()
    response = submit(api, key, board.slug)
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1}


def test_it_limits_a_key_to_one_leaderboard(db, api, make_board):
    mine = make_board(slug="mine")
    other = make_board(slug="other")
    key = create_api_key("--name", "scoped", "--leaderboard", "mine").strip()
    assert ApiKey.objects.get(key_hash=hash_api_key(key)).leaderboard_id == mine.id
    assert submit(api, key, mine.slug).status_code == 202
    response = submit(api, key, other.slug)
    assert response.status_code == 403, response.content
    assert "other" in response.json()["detail"]


def test_it_makes_an_admin_key_that_creates_boards(db, api):
    key = create_api_key("--name", "boss", "--admin").strip()
    assert ApiKey.objects.get(key_hash=hash_api_key(key)).is_admin
    response = bearer(api, key).post("/api/v1/leaderboards/", {"slug": "new-one", "name": "New"}, format="json")
    assert response.status_code == 201, response.content


def test_it_makes_a_plain_key_that_cannot_create_boards(db, api):
    key = create_api_key("--name", "plain").strip()
    response = bearer(api, key).post("/api/v1/leaderboards/", {"slug": "new-one", "name": "New"}, format="json")
    assert response.status_code == 403, response.content


def test_it_refuses_an_unknown_leaderboard(db):
    count = ApiKey.objects.count()
    with pytest.raises(CommandError, match="nope"):
        create_api_key("--name", "lost", "--leaderboard", "nope")
    assert ApiKey.objects.count() == count


def test_it_requires_a_name(db):
    with pytest.raises(CommandError, match="--name"):
        create_api_key()


# --- install_schedules ----------------------------------------------------------------------


def install() -> str:
    out = StringIO()
    call_command("install_schedules", stdout=out)
    return out.getvalue()


def test_it_installs_every_schedule(db):
    out = install()
    assert SCHEDULES, "nothing to install"
    queue_names = all_queue_names(
        django_settings.LEADERBOARD_QUEUE_PREFIX, django_settings.LEADERBOARD_INGEST_PARTITIONS
    )
    for schedule in SCHEDULES:
        task = PeriodicTask.objects.get(name=schedule.name)
        assert task.task == schedule.task
        assert task.enabled
        assert (task.interval.every, task.interval.period) == (schedule.every_seconds, IntervalSchedule.SECONDS)
        assert task.expire_seconds == schedule.expires_seconds
        # Routed to a queue the workers consume.
        assert task.queue in queue_names
        assert task.queue.endswith(f".{schedule.queue}")
        assert schedule.name in out


def test_it_schedules_only_registered_tasks():
    celery_app.loader.import_default_modules()
    registered = set(celery_app.tasks)
    missing = [s.task for s in SCHEDULES if s.task not in registered]
    assert missing == []


def test_it_does_not_duplicate_schedules_on_a_second_run(db):
    install()
    tasks = list(PeriodicTask.objects.order_by("name").values_list("name", "task", "interval_id", "queue"))
    intervals = IntervalSchedule.objects.count()
    install()
    assert list(PeriodicTask.objects.order_by("name").values_list("name", "task", "interval_id", "queue")) == tasks
    assert IntervalSchedule.objects.count() == intervals
    assert PeriodicTask.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(SCHEDULES)


def test_it_keeps_an_operators_schedule_edit_unless_asked_to_reset(db):
    call_command("install_schedules", stdout=StringIO())
    name = SCHEDULES[0].name
    PeriodicTask.objects.filter(name=name).update(enabled=False)
    call_command("install_schedules", stdout=StringIO())
    assert PeriodicTask.objects.get(name=name).enabled is False
    call_command("install_schedules", "--reset", stdout=StringIO())
    assert PeriodicTask.objects.get(name=name).enabled is True
