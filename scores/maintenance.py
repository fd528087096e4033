"""Housekeeping of the score tables."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from scores.models import ErasedUser, ProcessedEvent


def processed_events_purge() -> int:
    """Forget event ids past their retention window; a resend after that counts again."""
    cutoff = timezone.now() - timedelta(hours=settings.LEADERBOARD_EVENT_ID_RETENTION_HOURS)
    deleted, _ = ProcessedEvent.objects.filter(applied_at__lt=cutoff).delete()
    return deleted


def erased_users_purge() -> int:
    """Forget finished erasures past the event-id retention window: an event accepted
    before the erasure is not expected to arrive later than that (nor its id kept)."""
    cutoff = timezone.now() - timedelta(hours=settings.LEADERBOARD_EVENT_ID_RETENTION_HOURS)
    deleted, _ = ErasedUser.objects.filter(requested_at__lt=cutoff, finished_at__isnull=False).delete()
    return deleted
