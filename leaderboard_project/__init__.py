"""Leaderboard project package: re-exports the Celery app so Django loads it first."""

from leaderboard_project.celery import app as celery_app

__all__ = ["celery_app"]
