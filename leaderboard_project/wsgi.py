"""WSGI entry point (bin/web runs it under granian): the score endpoint's front door
(``scores.front_door``) in front of Django."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")
django_application = get_wsgi_application()

from scores.front_door import ScoreFrontDoor  # noqa: E402 - needs the app set up first

application = ScoreFrontDoor(django_application)
