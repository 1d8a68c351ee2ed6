"""Webhook subscription use cases: create (the secret shown once), show, list, change, delete."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import contains_eager

from app.bus.log import EventLog
from app.extensions import db
from app.models import Stream, Subscription
from app.models.base import new_id
from app.models.subscription import STATUS_ACTIVE, STATUS_DISABLED, STATUS_PAUSED, consumer_group_name
from app.security import Principal
from app.services import audit, webhook_secrets
from app.services.errors import BadRequest, Invalid, NotFound
from app.services.event_log import event_log
from app.services.log_errors import log_errors
from app.services.pagination import decode_cursor, encode_cursor
from app.services.streams import get_stream
from app.services.validation import check_int, check_keys, check_optional_str
from app.services.webhook_checks import (
    check_bool,
    check_event_types,
    check_filter,
    check_rate_limit,
    check_retry_schedule,
    check_timeout,
    check_webhook_url,
)
from app.services.windows import as_utc

logger = logging.getLogger(__name__)

PATCH_FIELDS = {"url", "event_types", "filter", "ordered", "rate_limit_per_s", "max_in_flight", "retry_schedule",
                "description", "timeout_s"}
CREATE_FIELDS = PATCH_FIELDS | {"stream"}
STATUSES = (STATUS_ACTIVE, STATUS_PAUSED, STATUS_DISABLED)
DEFAULT_MAX_IN_FLIGHT = 10


def _max_in_flight(value: Any) -> int:
    return check_int(value, "max_in_flight", 1, int(current_app.config["WEBHOOK_MAX_IN_FLIGHT"]))


# Each settable field's check; _DEFAULTS fills what a create body leaves out.
_CHECKS: dict[str, Any] = {
    "url": check_webhook_url,
    "event_types": check_event_types,
    "filter": check_filter,
    "ordered": lambda v: check_bool(v, "ordered"),
    "rate_limit_per_s": check_rate_limit,
    "max_in_flight": _max_in_flight,
    "retry_schedule": check_retry_schedule,
    "description": lambda v: check_optional_str(v, "description", 10_000),
    "timeout_s": check_timeout,
}
_DEFAULTS: dict[str, Any] = {"event_types": None, "filter": None, "ordered": False, "rate_limit_per_s": None,
                             "max_in_flight": DEFAULT_MAX_IN_FLIGHT, "retry_schedule": None, "description": None,
                             "timeout_s": None}


def _tenant_query(principal: Principal) -> Any:
    # The stream is joined (and loaded) with the row: every view of a subscription names its stream.
    return (select(Subscription).join(Stream, Stream.id == Subscription.stream_id)
            .options(contains_eager(Subscription.stream))
            .where(Subscription.tenant_id == principal.tenant_id))


def get_subscription(principal: Principal, subscription_id: str) -> Subscription:
    """The tenant's subscription; 404 when absent or another tenant's."""
    sub = db.session.execute(
        _tenant_query(principal).where(Subscription.id == subscription_id)
    ).scalar_one_or_none()
    if sub is None:
        raise NotFound(f"no subscription {subscription_id!r}", code="subscription_not_found",
                       details={"id": subscription_id})
    return sub


def list_subscriptions(principal: Principal, limit: int, cursor: str | None, stream: str | None = None,
                       status: str | None = None) -> tuple[list[Subscription], str | None]:
    """The tenant's subscriptions, oldest first, optionally of one stream (by name) or status."""
    query = _tenant_query(principal)
    if stream:
        query = query.where(Stream.name == stream)
    if status:
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}", code="invalid_parameter",
                             details={"param": "status"})
        query = query.where(Subscription.status == status)
    state = decode_cursor(cursor)
    if state:
        try:
            at = as_utc(datetime.fromisoformat(str(state["at"])))
            after_id = str(state["id"])
        except (KeyError, ValueError) as exc:
            raise BadRequest("invalid cursor", code="invalid_cursor") from exc
        query = query.where(or_(Subscription.created_at > at,
                                and_(Subscription.created_at == at, Subscription.id > after_id)))
    rows = list(db.session.execute(
        query.order_by(Subscription.created_at, Subscription.id).limit(limit + 1)).unique().scalars())
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor({"at": as_utc(last.created_at).isoformat(), "id": last.id})
    return rows[:limit], nxt


def create_subscription(principal: Principal, body: dict[str, Any]) -> tuple[Subscription, str]:
    """Create a subscription of a tenant's stream; returns it and its first secret (never shown again)."""
    check_keys(body, CREATE_FIELDS)
    if "url" not in body:
        raise Invalid("url is required", code="invalid_field", details={"field": "url"})
    if not isinstance(body.get("stream"), str):
        raise Invalid("stream must be the name of a stream", code="invalid_field", details={"field": "stream"})
    values = {field: _CHECKS[field](body[field] if field in body else _DEFAULTS[field]) for field in PATCH_FIELDS}
    # Checked after the fields: a 404 for the stream must not hide that the body itself was invalid.
    stream = get_stream(principal, body["stream"])
    secret, entry = webhook_secrets.new_secret_entry()
    sub_id = new_id()
    # A new endpoint receives what is published from now on, not the stream's history (use recover for
    # that). Positioned before the row is written: on SQLite the log's connection must not wait for ours.
    with log_errors(stream.name):
        event_log().reset(consumer_group_name(principal.tenant_slug, sub_id), stream.log_name, "latest")
    sub = Subscription(id=sub_id, tenant_id=principal.tenant_id, stream_id=stream.id, stream=stream,
                       status=STATUS_ACTIVE, secrets=[entry], **values)
    db.session.add(sub)
    db.session.flush()
    audit.record(principal, "subscription.create", "subscription", sub.id,
                 {"stream": stream.name, "url": sub.url, "event_types": sub.event_types, "filter": sub.filter})
    db.session.commit()
    logger.info("subscription %s of %s/%s created by %s", sub.id, principal.tenant_slug, stream.name,
                principal.actor)
    return sub, secret


def update_subscription(principal: Principal, subscription_id: str, body: dict[str, Any]) -> Subscription:
    """Change a subscription's settings (the same checks as at creation); its stream cannot change."""
    if "stream" in body:
        raise Invalid("a subscription's stream cannot change: create a new subscription", code="immutable_field",
                      details={"field": "stream"})
    check_keys(body, PATCH_FIELDS)
    values = {field: _CHECKS[field](body[field]) for field in PATCH_FIELDS if field in body}
    sub = get_subscription(principal, subscription_id)
    changes: dict[str, Any] = {}
    for field, value in values.items():
        if getattr(sub, field) != value:
            changes[field] = [getattr(sub, field), value]
            setattr(sub, field, value)
    if changes:
        audit.record(principal, "subscription.update", "subscription", sub.id, changes)
        db.session.commit()
    return sub


def delete_subscription(principal: Principal, subscription_id: str) -> None:
    """Delete a subscription with its deliveries, dead letters and jobs (database cascades), then its log group."""
    sub = get_subscription(principal, subscription_id)
    group, log_name = sub.consumer_group, sub.stream.log_name
    audit.record(principal, "subscription.delete", "subscription", sub.id, {"stream": sub.stream.name,
                                                                            "url": sub.url})
    db.session.delete(sub)
    db.session.commit()
    logger.info("subscription %s deleted by %s", subscription_id, principal.actor)
    forget_group(group, log_name)


def forget_group(group: str, log_name: str, log: EventLog | None = None) -> None:
    """Delete a deleted subscription's consumer group from the log, so that no stale group lingers in the lag views.

    Best effort: the subscription is gone either way; a dispatcher still running it deletes the group again once
    its runner has stopped (its last commit could otherwise bring the group back), through its own ``log``.
    """
    try:
        (log or event_log()).delete_group(group, log_name)
    except Exception:  # noqa: BLE001 - the log away for a moment must not fail the delete
        logger.warning("could not delete group %s of a deleted subscription", group, exc_info=True)


def subscription_to_json(sub: Subscription, secret: str | None = None) -> dict[str, Any]:
    """The API's view of a subscription; ``secret`` only in the answer that created or rotated it."""
    out: dict[str, Any] = {
        "id": sub.id,
        "stream": sub.stream.name,
        "url": sub.url,
        "event_types": sub.event_types,
        "filter": sub.filter,
        "ordered": sub.ordered,
        "rate_limit_per_s": sub.rate_limit_per_s,
        "max_in_flight": sub.max_in_flight,
        "retry_schedule": sub.retry_schedule,
        "timeout_s": sub.timeout_s,
        "description": sub.description,
        "status": sub.status,
        "disabled_reason": sub.disabled_reason,
        "secrets": webhook_secrets.secrets_view(sub),
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "last_success_at": sub.last_success_at,
        "failing_since": sub.failing_since,
    }
    if secret is not None:
        out["secret"] = secret
    return out
