"""WSGI entry point: Django alone (the ASGI entry point, leaderboard_project.asgi, puts
the score front door in front of it; a WSGI server such as gunicorn serves this one)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")
application = get_wsgi_application()
