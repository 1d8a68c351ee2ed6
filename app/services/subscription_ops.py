"""Operations on one subscription: pause, resume, rotate its secret, recover a window, list its deliveries."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Delivery, DeliveryAttempt, ReplayJob, Subscription
from app.models.base import utcnow
from app.models.delivery import DEAD, DISCARDED, RETRYING, SUCCEEDED, WAITING
from app.models.replay import KIND_RECOVER
from app.models.subscription import STATUS_ACTIVE, STATUS_PAUSED
from app.security import Principal
from app.services import audit, webhook_secrets
from app.services.errors import BadRequest, Invalid
from app.services.replay_jobs import create_job
from app.services.subscriptions import get_subscription
from app.services.validation import check_int, check_keys
from app.services.windows import check_window, iso, newest_first, page, parse_time

logger = logging.getLogger(__name__)

DELIVERY_STATES = (SUCCEEDED, RETRYING, WAITING, DEAD, DISCARDED)
MAX_GRACE_S = 7 * 24 * 3600


def pause(principal: Principal, subscription_id: str) -> Subscription:
    """Stop deliveries; events keep accumulating in the log and are delivered on resume."""
    sub = get_subscription(principal, subscription_id)
    if sub.status != STATUS_PAUSED:
        audit.record(principal, "subscription.pause", "subscription", sub.id, {"from": sub.status})
        sub.status = STATUS_PAUSED
        db.session.commit()
    return sub


def resume(principal: Principal, subscription_id: str) -> Subscription:
    """Deliver again; a disabled subscription (410, or failing too long) is re-activated with a clean slate."""
    sub = get_subscription(principal, subscription_id)
    if sub.status != STATUS_ACTIVE:
        audit.record(principal, "subscription.resume", "subscription", sub.id,
                     {"from": sub.status, "disabled_reason": sub.disabled_reason})
        sub.status = STATUS_ACTIVE
        # Without this the failing-too-long rule would disable it again on the next failure.
        sub.disabled_reason = None
        sub.failing_since = None
        db.session.commit()
    return sub


def rotate_secret(principal: Principal, subscription_id: str, body: dict[str, Any]) -> tuple[Subscription, str]:
    """A new signing secret; the old ones keep signing for ``grace_s`` (default WEBHOOK_ROTATION_GRACE_S)."""
    check_keys(body, {"grace_s"})
    grace = body.get("grace_s")
    grace_s = (int(current_app.config["WEBHOOK_ROTATION_GRACE_S"]) if grace is None
               else check_int(grace, "grace_s", 0, MAX_GRACE_S))
    sub = get_subscription(principal, subscription_id)
    secret = webhook_secrets.rotate(sub, grace_s)
    audit.record(principal, "subscription.rotate_secret", "subscription", sub.id,
                 {"grace_s": grace_s, "live_secrets": len(sub.secrets)})
    db.session.commit()
    return sub, secret


def recover(principal: Principal, subscription_id: str, body: dict[str, Any]) -> tuple[ReplayJob, bool]:
    """A job that delivers again every event of the stream in [since, until) (until: now)."""
    check_keys(body, {"since", "until"})
    since = parse_time(body.get("since"), "since")
    if since is None:
        raise Invalid("since is required", code="invalid_field", details={"field": "since"})
    until = parse_time(body.get("until"), "until") or utcnow()
    check_window(since, until)
    sub = get_subscription(principal, subscription_id)
    # until is stored resolved: a job run later must not take in events published after the request.
    return create_job(principal, KIND_RECOVER, {"since": iso(since), "until": iso(until)}, sub.id,
                      "subscription.recover")


def list_deliveries(principal: Principal, subscription_id: str, limit: int, cursor: str | None,
                    status: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The subscription's deliveries, newest first, each with its attempts (two queries a page)."""
    sub = get_subscription(principal, subscription_id)
    query = select(Delivery).where(Delivery.tenant_id == principal.tenant_id, Delivery.subscription_id == sub.id)
    if status:
        if status not in DELIVERY_STATES:
            raise BadRequest(f"status must be one of {', '.join(DELIVERY_STATES)}", code="invalid_parameter",
                             details={"param": "status"})
        query = query.where(Delivery.status == status)
    query = newest_first(query, Delivery.created_at, Delivery.id, cursor)
    rows, nxt = page(list(db.session.execute(query.limit(limit + 1)).scalars()), limit, lambda d: d.created_at)
    attempts = attempts_of([d.id for d in rows])
    return [delivery_to_json(d, attempts.get(d.id, [])) for d in rows], nxt


def attempts_of(delivery_ids: list[str]) -> dict[str, list[DeliveryAttempt]]:
    """The attempts of these deliveries in one query, oldest first per delivery."""
    if not delivery_ids:
        return {}
    out: dict[str, list[DeliveryAttempt]] = defaultdict(list)
    query = (select(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids))
             .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.id))
    for attempt in db.session.execute(query).scalars():
        out[attempt.delivery_id].append(attempt)
    return out


def attempt_to_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    """One HTTP attempt."""
    return {"at": attempt.at, "duration_ms": attempt.duration_ms, "status_code": attempt.status_code,
            "response_excerpt": attempt.response_excerpt, "error": attempt.error}


def delivery_to_json(delivery: Delivery, attempts: list[DeliveryAttempt] | None = None,
                     with_event: bool = False) -> dict[str, Any]:
    """The API's view of a delivery; ``event`` (the body sent) only when asked for."""
    out: dict[str, Any] = {
        "id": delivery.id,
        "subscription": delivery.subscription_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "event_key": delivery.event_key,
        "partition": delivery.partition,
        "offset": delivery.offset,
        "status": delivery.status,
        "origin": delivery.origin,
        "attempt_count": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
    }
    if attempts is not None:
        out["attempts"] = [attempt_to_json(a) for a in attempts]
    if with_event:
        out["event"] = event_of(delivery)
    return out


def event_of(delivery: Delivery) -> Any:
    """The stored CloudEvents body as JSON (None once delivered and dropped); text if it is not JSON."""
    if delivery.body is None:
        return None
    try:
        return orjson.loads(delivery.body)
    except orjson.JSONDecodeError:
        logger.warning("delivery %s holds a body that is not JSON", delivery.id)
        return bytes(delivery.body).decode("utf-8", errors="replace")
