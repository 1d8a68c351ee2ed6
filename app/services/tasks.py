"""Hand work to Celery by task name, so services never import the workers package."""
from __future__ import annotations

import logging
from typing import Any

from flask import current_app

logger = logging.getLogger(__name__)


def enqueue(task_name: str, *args: Any) -> None:
    """Send ``task_name`` (e.g. ``replay.run_job``) with JSON arguments to the app's Celery."""
    celery = current_app.extensions["celery"]
    celery.send_task(task_name, args=list(args))
