"""Celery binding: the task base class that runs in the Flask app context, and ``init_celery`` (from create_app).

Kept free of work at import time: ``create_app`` imports this module, the Celery entry point is
``workers.celery_app`` (which builds the Flask app).
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task
from flask import Flask, has_app_context

from app.extensions import celery
from app.services.dispatch_config import setting

logger = logging.getLogger(__name__)

TASK_MODULES = ("workers.tasks.deliveries", "workers.tasks.replay", "workers.tasks.maintenance",
                "workers.tasks.metrics", "workers.tasks.alerts")
MEMORY_BROKER = "memory://"


class ContextTask(Task):
    """Runs every task inside the Flask app bound by ``init_celery`` (one Flask app per process)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():  # eager calls from inside a request or a test
            return self.run(*args, **kwargs)
        flask_app: Flask | None = getattr(self.app, "flask_app", None)
        if flask_app is None:
            raise RuntimeError("Celery is not bound to a Flask app: call create_app() first")
        with flask_app.app_context():
            return self.run(*args, **kwargs)


def beat_schedule(config: Any) -> dict[str, dict[str, Any]]:
    """Beat's periodic tasks; each expires before its next run so that a backlog of ticks never piles up."""

    def every(seconds: float, task: str) -> dict[str, Any]:
        return {"task": task, "schedule": timedelta(seconds=seconds),
                "options": {"expires": max(seconds * 2, 5.0)}}

    return {
        # Retries are due to the second (schedules like [5, 300, ...]); a run claims rows, so ticks may overlap.
        "deliveries.retry_due": every(setting(config, "WEBHOOK_RETRY_TICK_S", 1.0, float), "deliveries.retry_due"),
        "replay.schedule_due": every(30.0, "replay.schedule_due"),
        "maintenance.disable_failing": every(60.0, "maintenance.disable_failing"),
        "maintenance.purge_idempotency": every(3600.0, "maintenance.purge_idempotency"),
        "maintenance.retention": every(60.0, "maintenance.retention"),
        # Old succeeded/discarded deliveries and their attempts, in chunks within a time budget.
        "maintenance.purge_deliveries": every(600.0, "maintenance.purge_deliveries"),
        # Gauges (lag, dead letters) sampled into the minute roll-ups; counters are flushed by each process.
        "metrics.rollup": every(60.0, "metrics.rollup"),
        # Alert rules (pending -> firing -> resolved); concurrent runs are safe (conditional updates).
        "alerts.evaluate": every(setting(config, "ALERT_EVAL_INTERVAL_S", 30.0, float), "alerts.evaluate"),
    }


def init_celery(flask_app: Flask) -> None:
    """Configure the Celery singleton from ``flask_app``'s config and bind it (the last app bound wins)."""
    config = flask_app.config
    broker = config.get("CELERY_BROKER_URL") or MEMORY_BROKER
    options: dict[str, Any] = {}
    if broker.startswith("memory://"):
        # The in-process transport polls its queues; the default 1 s would delay every enqueue() by up to 1 s.
        options["polling_interval"] = 0.05
    elif broker.startswith(("redis://", "rediss://")):
        # A replay job may run long; Redis redelivers unacknowledged tasks after this (acks are late).
        options["visibility_timeout"] = int(config.get("CELERY_VISIBILITY_TIMEOUT_S", 6 * 3600))
    celery.conf.update(
        broker_url=broker,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        # At least once: a task is acknowledged after it ran, so a worker dying mid-task hands it to
        # another; every task is safe to run twice.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        include=list(TASK_MODULES),
        beat_schedule=beat_schedule(config),
        worker_hijack_root_logger=False,
    )
    celery.flask_app = flask_app  # type: ignore[attr-defined]
    flask_app.extensions["celery"] = celery
    from workers.consumer import install
    from workers.heartbeat import install as install_heartbeat

    install(celery)
    install_heartbeat(celery)  # worker and beat heartbeats, read by worker_silent alert rules
