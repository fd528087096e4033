"""The Celery application, configured from Django settings (namespace CELERY).

Task modules are listed in ``CELERY_IMPORTS``: they live in the ``tasks`` package, which
is not an app with a ``tasks.py`` that ``autodiscover_tasks`` would find.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")

app = Celery("leaderboard_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
