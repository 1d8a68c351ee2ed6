"""The Celery binding: dotted task names, beat's schedule, tasks running inside the Flask app context."""
from __future__ import annotations

import subprocess
import sys

import pytest
from flask import Flask

from config import BASE_DIR
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


@pytest.mark.parametrize(("interval", "expected"), [(0.001, 0.001), (0.0, 0.005)])
def test_the_dispatching_process_freezes_its_startup_objects_and_shortens_the_switch_interval(
        interval: float, expected: float) -> None:
    # In a process of its own: freezing is for the life of the process.
    code = ("import gc, sys\n"
            "import app, workers.celery_app\n"
            "from workers.consumer import tune_runtime\n"
            f"tune_runtime({interval!r}); tune_runtime({interval!r})\n"
            "print(gc.get_freeze_count(), sys.getswitchinterval())")
    out = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    frozen, switch = int(out[0]), float(out[1])
    assert frozen > 50_000  # the app and its libraries: out of the collector's full passes
    assert switch == pytest.approx(expected)
