"""Maintenance tasks: disable failing subscriptions, purge idempotency records and old deliveries, enforce log
retention."""
from __future__ import annotations

import logging

from app.extensions import celery

logger = logging.getLogger(__name__)


@celery.task(name="maintenance.disable_failing", shared=False)
def disable_failing() -> int:
    """Disable subscriptions that have been failing without a success for too long."""
    from app.services.retries import disable_failing as run

    return run()


@celery.task(name="maintenance.purge_idempotency", shared=False)
def purge_idempotency() -> int:
    """Delete expired Idempotency-Key records."""
    from app.services.idempotency import purge_expired

    return purge_expired()


@celery.task(name="maintenance.retention", shared=False)
def retention() -> int:
    """Drop events older than their stream's retention."""
    from app.services.event_log import event_log

    return event_log().enforce_retention()


@celery.task(name="maintenance.purge_deliveries", shared=False)
def purge_deliveries() -> int:
    """Delete succeeded and discarded deliveries older than DELIVERY_RETENTION_DAYS (with their attempts)."""
    from app.services.delivery_retention import purge_old_deliveries

    return purge_old_deliveries()
