"""The Celery binding: dotted task names, beat's schedule, tasks running inside the Flask app context."""
from __future__ import annotations

from flask import Flask

from workers import init_celery


def test_tasks_and_beat_schedule(app: Flask) -> None:
    from app.extensions import celery

    init_celery(app)
    celery.loader.import_default_modules()
    names = {"deliveries.retry_due", "replay.run_job", "replay.schedule_due", "maintenance.disable_failing",
             "metrics.rollup", "maintenance.purge_idempotency", "maintenance.retention"}
    assert names <= set(celery.tasks)
    schedule = celery.conf.beat_schedule
    # Every periodic task of delivery and maintenance is scheduled (other features may add their own).
    assert {entry["task"] for entry in schedule.values()} >= names - {"replay.run_job"}
    assert schedule["deliveries.retry_due"]["schedule"].total_seconds() <= 2
    assert app.extensions["celery"] is celery


def test_tasks_run_in_the_app_context_and_twice_safely(app: Flask) -> None:
    from app.extensions import celery

    init_celery(app)
    celery.loader.import_default_modules()
    # Called as a worker would (no app context pushed by the caller): the task pushes the bound app's.
    assert celery.tasks["maintenance.retention"].apply().get() >= 0
    assert celery.tasks["replay.run_job"].apply(args=["no-such-job"]).get() is None
    assert celery.tasks["replay.run_job"].apply(args=["no-such-job"]).get() is None
    assert celery.tasks["deliveries.retry_due"].apply().get() >= 0

