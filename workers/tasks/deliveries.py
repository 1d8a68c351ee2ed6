"""Delivery tasks: due retries (beat, every second or so)."""
from __future__ import annotations

import logging

from app.extensions import celery

logger = logging.getLogger(__name__)


@celery.task(name="deliveries.retry_due", shared=False)
def retry_due() -> int:
    """Send the retries that are due; concurrent runs claim disjoint deliveries."""
    from app.services.retries import retry_due as run

    return run()
