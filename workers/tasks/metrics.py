"""Metric tasks: the per-minute roll-up of the console's figures."""
from __future__ import annotations

import logging

from app.extensions import celery

logger = logging.getLogger(__name__)


@celery.task(name="metrics.rollup", shared=False)
def rollup() -> dict[str, int]:
    """Flush this worker's counted minutes, sample every tenant's lag and dead letters, drop old roll-ups."""
    from app.services.live_metrics import rollup as run

    return run()
