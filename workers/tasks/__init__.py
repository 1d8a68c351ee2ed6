"""Celery tasks: thin wrappers that call app/services, by dotted name."""
