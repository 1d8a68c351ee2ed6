"""Liveness and readiness checks of the parts the bus depends on."""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import text

from app.bus.log import StreamNotFound
from app.extensions import db
from app.services.event_log import event_log

logger = logging.getLogger(__name__)


def readiness() -> dict[str, str]:
    """``ok`` or an error message for the database, the event log and Redis (when configured)."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the message says which
        logger.warning("database not ready: %s", exc)
        checks["database"] = f"error: {type(exc).__name__}"
        db.session.rollback()
    try:
        # A metadata look-up of a stream that cannot exist: a round trip to the backend.
        event_log().stream_info("__ready__.__probe__")
        checks["event_log"] = "ok"
    except StreamNotFound:
        checks["event_log"] = "ok"
    except Exception as exc:  # idem
        logger.warning("event log not ready: %s", exc)
        checks["event_log"] = f"error: {type(exc).__name__}"
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        try:
            import redis

            redis.Redis.from_url(redis_url, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:  # idem
            logger.warning("redis not ready: %s", exc)
            checks["redis"] = f"error: {type(exc).__name__}"
    return checks
