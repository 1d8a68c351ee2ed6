"""Replay jobs: create and hand to Celery, show progress, list, schedule with cron, cancel.

Selector shapes (``ReplayJob.selector``), what the replay runner reads:

- kind ``dead_letters``, by ids: ``{"ids": [delivery id, ...]}`` (checked to be the tenant's dead letters);
- kind ``dead_letters``, by window: ``{"subscription": id | None, "since": RFC 3339 | None,
  "until": RFC 3339 | None, "filter": CEL | None}``; the window is over the time a delivery became
  dead (``Delivery.updated_at``), see ``dead_letters.dead_letter_query``;
- kind ``recover``: ``{"since": RFC 3339, "until": RFC 3339}``, the window over the events' log time;
- a scheduled job (status ``scheduled``, ``cron`` set, kind ``dead_letters``, a subscription):
  ``{"filter": CEL | None, "max_age_s": int | None}``; each run replays the subscription's dead
  letters of the last ``max_age_s`` seconds (all when None).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from croniter import CroniterError, croniter
from sqlalchemy import select

from app.extensions import db
from app.models import ReplayJob
from app.models.base import utcnow
from app.models.replay import KIND_DEAD_LETTERS, KIND_RECOVER, QUEUED, SCHEDULED
from app.security import Principal
from app.services import audit
from app.services.errors import BadRequest, Conflict, Invalid, NotFound
from app.services.subscriptions import get_subscription
from app.services.tasks import enqueue
from app.services.validation import check_int, check_keys
from app.services.webhook_checks import check_filter
from app.services.windows import as_utc, newest_first, page

logger = logging.getLogger(__name__)

RUN_TASK = "replay.run_job"
SCHEDULE_FIELDS = {"subscription", "cron", "selector"}
SCHEDULED_SELECTOR_FIELDS = {"filter", "max_age_s"}
MAX_AGE_S = 366 * 24 * 3600
KINDS = (KIND_DEAD_LETTERS, KIND_RECOVER)
JOB_STATES = ("queued", "running", "succeeded", "failed", "scheduled")


def create_job(principal: Principal, kind: str, selector: dict[str, Any], subscription_id: str | None,
               action: str, total: int = 0) -> tuple[ReplayJob, bool]:
    """Store a queued job, audit it, commit, then enqueue it. Returns the job and whether Celery took it."""
    job = ReplayJob(tenant_id=principal.tenant_id, subscription_id=subscription_id, kind=kind, selector=selector,
                    status=QUEUED, total=total, created_by=principal.actor)
    db.session.add(job)
    db.session.flush()
    audit.record(principal, action, "replay_job", job.id,
                 {"kind": kind, "subscription": subscription_id, "selector": _audit_selector(selector)})
    # Committed before sending: the worker must find the row, and a lost send leaves a durable,
    # visible job (status queued, error set) rather than a silently dropped request.
    db.session.commit()
    return job, send(job)


def send(job: ReplayJob) -> bool:
    """Enqueue ``replay.run_job(job.id)``; on failure the job keeps status queued with the reason in ``error``."""
    try:
        enqueue(RUN_TASK, job.id)
    except Exception as exc:  # noqa: BLE001 — no Celery bound, broker down: any failure is reported on the job
        logger.error("replay job %s stored but not enqueued: %r", job.id, exc)
        job.error = f"not enqueued: {type(exc).__name__}: {exc}"[:1000]
        db.session.commit()
        return False
    return True


def _audit_selector(selector: dict[str, Any]) -> dict[str, Any]:
    # Thousands of ids would bloat the audit log: record how many, and the first few.
    if "ids" in selector:
        ids = selector["ids"]
        return {"ids": ids[:20], "count": len(ids)}
    return selector


def get_job(principal: Principal, job_id: str) -> ReplayJob:
    """The tenant's job ``job_id``; 404 when absent or another tenant's."""
    job = db.session.execute(
        select(ReplayJob).where(ReplayJob.tenant_id == principal.tenant_id, ReplayJob.id == job_id)
    ).scalar_one_or_none()
    if job is None:
        raise NotFound(f"no replay job {job_id!r}", code="replay_job_not_found", details={"id": job_id})
    return job


def list_jobs(principal: Principal, limit: int, cursor: str | None, subscription: str | None = None,
              status: str | None = None, kind: str | None = None) -> tuple[list[ReplayJob], str | None]:
    """The tenant's jobs, newest first, optionally of one subscription, status or kind."""
    query = select(ReplayJob).where(ReplayJob.tenant_id == principal.tenant_id)
    if subscription:
        query = query.where(ReplayJob.subscription_id == subscription)
    if status:
        if status not in JOB_STATES:
            raise BadRequest(f"status must be one of {', '.join(JOB_STATES)}", code="invalid_parameter",
                             details={"param": "status"})
        query = query.where(ReplayJob.status == status)
    if kind:
        if kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}", code="invalid_parameter",
                             details={"param": "kind"})
        query = query.where(ReplayJob.kind == kind)
    query = newest_first(query, ReplayJob.created_at, ReplayJob.id, cursor)
    rows = list(db.session.execute(query.limit(limit + 1)).scalars())
    return page(rows, limit, lambda r: r.created_at)


def check_cron(value: Any) -> str:
    """A five-field cron expression (UTC) or an @-alias like @hourly; 422 otherwise."""
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise Invalid("cron must be a cron expression like '0 3 * * *'", code="invalid_cron",
                      details={"field": "cron"})
    cron = " ".join(value.split())
    # Beat checks due jobs by the minute: croniter's seconds and years fields are refused.
    if not cron.startswith("@") and len(cron.split(" ")) != 5:
        raise Invalid("cron must have five fields: minute hour day-of-month month day-of-week",
                      code="invalid_cron", details={"field": "cron", "cron": value})
    try:
        croniter(cron, utcnow())
    except (CroniterError, ValueError, KeyError) as exc:
        raise Invalid(f"invalid cron expression: {exc}", code="invalid_cron",
                      details={"field": "cron", "cron": value}) from exc
    return cron


def next_run(cron: str, after: datetime | None = None) -> datetime:
    """The next time ``cron`` fires after ``after`` (default now), UTC; beat advances jobs with this."""
    return as_utc(croniter(cron, as_utc(after or utcnow())).get_next(datetime))


def schedule_job(principal: Principal, body: dict[str, Any]) -> ReplayJob:
    """A scheduled dead-letter replay of one subscription, re-run by beat at every ``cron`` time."""
    check_keys(body, SCHEDULE_FIELDS)
    if not isinstance(body.get("subscription"), str):
        raise Invalid("subscription must be a subscription id", code="invalid_field",
                      details={"field": "subscription"})
    cron = check_cron(body.get("cron"))
    selector_in = body.get("selector") or {}
    if not isinstance(selector_in, dict):
        raise Invalid("selector must be an object", code="invalid_field", details={"field": "selector"})
    check_keys(selector_in, SCHEDULED_SELECTOR_FIELDS)
    max_age = selector_in.get("max_age_s")
    selector = {
        "filter": check_filter(selector_in.get("filter"), "selector.filter"),
        "max_age_s": None if max_age is None else check_int(max_age, "selector.max_age_s", 1, MAX_AGE_S),
    }
    subscription = get_subscription(principal, body["subscription"])
    job = ReplayJob(tenant_id=principal.tenant_id, subscription_id=subscription.id, kind=KIND_DEAD_LETTERS,
                    selector=selector, status=SCHEDULED, cron=cron, next_run_at=next_run(cron),
                    created_by=principal.actor)
    db.session.add(job)
    db.session.flush()
    audit.record(principal, "replay_job.schedule", "replay_job", job.id,
                 {"subscription": subscription.id, "cron": cron, "selector": selector})
    db.session.commit()
    logger.info("scheduled replay job %s (%s) for subscription %s", job.id, cron, subscription.id)
    return job


def cancel_job(principal: Principal, job_id: str) -> None:
    """Delete a scheduled job; a queued or running one cannot be cancelled (409)."""
    job = get_job(principal, job_id)
    if job.status != SCHEDULED:
        raise Conflict("only a scheduled job can be cancelled", code="job_not_scheduled",
                       details={"id": job.id, "status": job.status})
    db.session.delete(job)
    audit.record(principal, "replay_job.cancel", "replay_job", job_id, {"cron": job.cron})
    db.session.commit()


def job_to_json(job: ReplayJob) -> dict[str, Any]:
    """The API's view of a job with its progress."""
    return {
        "id": job.id,
        "kind": job.kind,
        "subscription": job.subscription_id,
        "selector": job.selector,
        "status": job.status,
        "cron": job.cron,
        "next_run_at": job.next_run_at,
        "progress": {"total": job.total, "done": job.done, "succeeded": job.succeeded, "failed": job.failed},
        "error": job.error,
        "created_by": job.created_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
