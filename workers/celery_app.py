"""The Celery entry point: ``celery -A workers.celery_app worker`` and ``celery -A workers.celery_app beat``.

Builds the Flask app from the environment (APP_ENV, DATABASE_URL, REDIS_URL, ...) once, here and only
here; tasks run inside its app context. A worker also runs the webhook dispatcher (workers/consumer.py).
"""
from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init

from app import create_app
from app.extensions import celery, db

logger = logging.getLogger(__name__)

flask_app = create_app()
app = celery  # what `celery -A workers.celery_app` looks for


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A prefork child must not share the parent's pooled database connections.
    with flask_app.app_context():
        db.engine.dispose(close=False)
    # Nor its event log: dropped, not closed (closing would close the parent's sockets); opened again on use.
    flask_app.extensions.pop("event_log", None)
