"""Replay tasks: run a replay job, start scheduled (cron) jobs."""
from __future__ import annotations

import logging

from app.extensions import celery

logger = logging.getLogger(__name__)


@celery.task(name="replay.run_job", shared=False)
def run_job(job_id: str) -> None:
    """Run or resume replay job ``job_id`` (a finished job is not run again)."""
    from app.services.replay_runner import run_job as run

    run(job_id)


@celery.task(name="replay.schedule_due", shared=False)
def schedule_due() -> int:
    """Start a run of every scheduled replay job whose time has come."""
    from app.services.replay_runner import schedule_due as run

    return run()
