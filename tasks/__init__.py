"""Celery tasks: ingest (apply score events), ranking (merge levels), maintenance (beat)."""
