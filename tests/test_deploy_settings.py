"""Production settings pass Django's deployment checks and demand their own secret."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_check(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LEADERBOARD_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "leaderboard_project.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_the_deploy_checks_in_production():
    result = run_check(
        LEADERBOARD_PRODUCTION="1",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="leaderboard.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_in_production_without_a_secret_key():
    result = run_check(LEADERBOARD_PRODUCTION="1", DJANGO_ALLOWED_HOSTS="leaderboard.example.com")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_it_warns_when_the_development_settings_are_checked_for_deployment():
    result = run_check()
    assert result.returncode != 0
    assert "security.W" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "secret_key",
    ["", "   ", "dev-only-not-secret", "change-me-in-production", "django-insecure-" + "x1" * 30, "short-secret"],
)
def test_it_refuses_to_start_in_production_with_a_weak_or_known_secret_key(secret_key):
    result = run_check(
        LEADERBOARD_PRODUCTION="1", DJANGO_SECRET_KEY=secret_key, DJANGO_ALLOWED_HOSTS="leaderboard.example.com"
    )
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


# A probe as a kubelet sends it: the pod's address as Host, plain HTTP, no proxy header.
PROBE = """
from django.test import Client
client = Client()
for path in ("/healthz", "/readyz", "/readyz/web"):
    response = client.get(path, HTTP_HOST="10.1.2.3:8000")
    print(path, response.status_code, response.get("Location"))
"""


def test_probes_answer_behind_any_host_and_without_the_tls_redirect():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LEADERBOARD_"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PROBE],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "leaderboard_project.settings",
            "LEADERBOARD_PRODUCTION": "1",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "leaderboard.example.com",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.startswith("/"))
    assert answers["/healthz"] == "200 None"
    # Ready or not, depending on this machine's services: never a 400 or a redirect.
    assert answers["/readyz"] in {"200 None", "503 None"}, answers
    assert answers["/readyz/web"] in {"200 None", "503 None"}, answers


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEADERBOARD_PRODUCTION", "ture"),
        ("LEADERBOARD_METRICS_PUBLIC", "enabled"),
        ("LEADERBOARD_MERGE_FAN_IN", "16x"),
    ],
)
def test_a_typo_in_a_setting_stops_the_start_naming_it(variable, value):
    result = run_check(**{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{variable}={value!r}" in result.stderr, result.stderr
