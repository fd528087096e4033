"""The production secret key check: settings call it before anything can sign a cookie."""

from django.core.exceptions import ImproperlyConfigured

# Django's own check (security.W009) asks for at least 50 characters and 5 distinct ones.
MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_CHARACTERS = 5


def production_secret_key_check(secret_key: str, *, known: list[str]) -> None:
    """Refuse a missing, empty, published or weak DJANGO_SECRET_KEY."""
    if not secret_key.strip():
        raise ImproperlyConfigured("LEADERBOARD_PRODUCTION=1 needs DJANGO_SECRET_KEY; it is missing or empty.")
    if secret_key in known or secret_key.startswith("django-insecure"):
        raise ImproperlyConfigured("LEADERBOARD_PRODUCTION=1: DJANGO_SECRET_KEY is a published development key.")
    if len(secret_key) < MIN_SECRET_KEY_LENGTH or len(set(secret_key)) < MIN_SECRET_KEY_CHARACTERS:
        raise ImproperlyConfigured(
            f"LEADERBOARD_PRODUCTION=1: DJANGO_SECRET_KEY must have at least {MIN_SECRET_KEY_LENGTH} characters, "
            f"{MIN_SECRET_KEY_CHARACTERS} of them distinct "
            "(make one: python -c 'import secrets; print(secrets.token_urlsafe(50))').",
        )
