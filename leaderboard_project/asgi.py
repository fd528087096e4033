"""ASGI entry point (bin/web serves it with granian): the score endpoint's front door
(``scores.front_door``) on the event loop, in front of Django's WSGI application, which
runs in a pool of threads (a2wsgi): every view, the admin and the pages stay Django + DRF."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard_project.settings")

from a2wsgi import WSGIMiddleware
from django.conf import settings

from leaderboard_project.wsgi import application as django_application
from scores.auth import THROTTLE_TAKEN
from scores.front_door import ScoreFrontDoor


def _django(environ: dict, start_response: object) -> object:
    # The door's mark that it counted the request against its key's budget travels in the
    # ASGI scope (a client cannot set it, unlike a header) into the WSGI environ.
    if environ["asgi.scope"].get(THROTTLE_TAKEN):
        environ[THROTTLE_TAKEN] = True
    return django_application(environ, start_response)


# Django's views block on the database and Redis: as many threads as bin/web asks for,
# one pool for them and for the door's slow steps.
_django_asgi = WSGIMiddleware(_django, workers=settings.LEADERBOARD_WEB_THREADS)
application = ScoreFrontDoor(_django_asgi, _django_asgi.executor)
