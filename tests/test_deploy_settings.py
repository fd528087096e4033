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
