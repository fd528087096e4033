"""Housekeeping of the score tables."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from scores.models import ProcessedEvent


def processed_events_purge() -> int:
    """Forget event ids past their retention window; a resend after that counts again."""
    cutoff = timezone.now() - timedelta(hours=settings.LEADERBOARD_EVENT_ID_RETENTION_HOURS)
    deleted, _ = ProcessedEvent.objects.filter(applied_at__lt=cutoff).delete()
    return deleted
