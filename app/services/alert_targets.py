"""Checks of an alert rule's fields (kind, target, threshold, durations, notify) and the tenant's alert stream."""
from __future__ import annotations

import logging
import math
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Stream, Subscription
from app.security import MANAGE, PUBLISH, READ, Principal
from app.services import streams
from app.services.errors import Conflict, Invalid, NotFound
from app.services.validation import check_int, check_name
from app.services.webhook_checks import check_webhook_url

logger = logging.getLogger(__name__)

CONSUMER_LAG, DEAD_LETTERS, DEAD_LETTER_RATE, FAILURE_RATE = (
    "consumer_lag", "dead_letters", "dead_letter_rate", "failure_rate")
THROUGHPUT_ABOVE, THROUGHPUT_BELOW, SUBSCRIPTION_DISABLED, WORKER_SILENT = (
    "throughput_above", "throughput_below", "subscription_disabled", "worker_silent")
KINDS = (CONSUMER_LAG, DEAD_LETTERS, DEAD_LETTER_RATE, FAILURE_RATE, THROUGHPUT_ABOVE, THROUGHPUT_BELOW,
         SUBSCRIPTION_DISABLED, WORKER_SILENT)
# Kinds scoped to the whole tenant, one stream or one subscription (an empty target: the whole tenant).
_SCOPED = (DEAD_LETTERS, DEAD_LETTER_RATE, FAILURE_RATE, SUBSCRIPTION_DISABLED)
# Thresholds a rule may leave out: "any disabled subscription", "no heartbeat for a minute".
_DEFAULT_THRESHOLD = {SUBSCRIPTION_DISABLED: 0.0, WORKER_SILENT: 60.0}
DEFAULTS: dict[str, int | None] = {"for_s": 60, "window_s": 300, "renotify_s": None}
_DURATION_BOUNDS = {"for_s": (0, 7 * 86400), "window_s": (60, 86400), "renotify_s": (60, 7 * 86400)}
MAX_NOTIFY = 20
PROCESSES = ("worker", "beat")


def check_kind(value: Any) -> str:
    """One of KINDS (422 otherwise)."""
    if value not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", code="invalid_field", details={"field": "kind"})
    return value


def _bad_target(message: str) -> Invalid:
    return Invalid(message, code="invalid_target", details={"field": "target"})


def check_target(principal: Principal, kind: str, value: Any) -> dict[str, str]:
    """The target of a rule of ``kind``, nulls dropped; a named stream or subscription must be the tenant's (404)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _bad_target("target must be an object")
    target = {k: v for k, v in value.items() if v is not None}
    allowed = {"process", "name"} if kind == WORKER_SILENT else {"stream", "group", "subscription"}
    unknown = sorted(set(target) - allowed)
    if unknown:
        raise _bad_target(f"target of a {kind} rule takes {', '.join(sorted(allowed))}, not {', '.join(unknown)}")
    for key, item in target.items():
        if not isinstance(item, str) or not item or len(item) > 255:
            raise _bad_target(f"target.{key} must be a non-empty string")
    if kind == WORKER_SILENT:
        if target.get("process") not in PROCESSES:
            raise _bad_target('target.process must be "worker" or "beat"')
        return target
    keys = set(target)
    if kind == CONSUMER_LAG and keys not in ({"stream", "group"}, {"subscription"}):
        raise _bad_target("target of a consumer_lag rule is {stream, group} or {subscription}")
    if kind in (THROUGHPUT_ABOVE, THROUGHPUT_BELOW) and keys != {"stream"}:
        raise _bad_target(f"target of a {kind} rule is {{stream}}")
    if kind in _SCOPED and (len(keys) > 1 or "group" in keys):
        raise _bad_target(f"target of a {kind} rule is {{}} (the tenant), {{stream}} or {{subscription}}")
    if "group" in target:
        check_name(target["group"], "target.group")
    # Checked after the shape: a 404 must not hide that the body itself was invalid.
    if "stream" in target:
        streams.get_stream(principal, target["stream"])
    if "subscription" in target:
        found = db.session.execute(select(Subscription.id).where(
            Subscription.tenant_id == principal.tenant_id, Subscription.id == target["subscription"])).first()
        if found is None:
            raise NotFound(f"no subscription {target['subscription']!r}", code="subscription_not_found",
                           details={"id": target["subscription"]})
    return target


def check_threshold(kind: str, value: Any, given: bool) -> float:
    """A finite number >= 0 (percent for failure_rate, events/s for throughput, seconds for worker_silent)."""
    if not given and kind in _DEFAULT_THRESHOLD:
        return _DEFAULT_THRESHOLD[kind]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if ok and kind == FAILURE_RATE:
        ok = value <= 100
    if not ok:
        bound = " and at most 100 (percent)" if kind == FAILURE_RATE else ""
        raise Invalid(f"threshold must be a number, at least 0{bound}", code="invalid_field",
                      details={"field": "threshold"})
    return float(value)


def check_duration(field: str, value: Any) -> int | None:
    """Seconds within the field's bounds; renotify_s may be null (notify once per firing)."""
    if value is None and field == "renotify_s":
        return None
    low, high = _DURATION_BOUNDS[field]
    return check_int(value, field, low, high)


def check_notify(value: Any) -> list[dict[str, str]]:
    """``[{"webhook": url} | {"email": address}]``: webhook URLs checked like subscriptions', e-mail needs SMTP_HOST."""
    if not isinstance(value, list) or len(value) > MAX_NOTIFY:
        raise Invalid(f"notify must be a list of at most {MAX_NOTIFY} {{webhook}} or {{email}} objects",
                      code="invalid_field", details={"field": "notify"})
    out: list[dict[str, str]] = []
    for index, item in enumerate(value):
        field = f"notify[{index}]"
        if not isinstance(item, dict) or len(item) != 1 or not ({"webhook", "email"} & set(item)):
            raise Invalid(f'{field} must be {{"webhook": url}} or {{"email": address}}', code="invalid_field",
                          details={"field": field})
        if "webhook" in item:
            entry = {"webhook": check_webhook_url(item["webhook"], field)}
        else:
            entry = {"email": _check_email(item["email"], field)}
        if entry in out:
            raise Invalid(f"{field} is listed twice", code="invalid_field", details={"field": field})
        out.append(entry)
    return out


def _check_email(value: Any, field: str) -> str:
    if not current_app.config.get("SMTP_HOST"):
        raise Invalid("e-mail notifications need SMTP_HOST in the configuration", code="smtp_not_configured",
                      details={"field": field})
    if not isinstance(value, str):
        raise Invalid(f"{field} must be an e-mail address", code="invalid_field", details={"field": field})
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise Invalid(f"{field}: {exc}", code="invalid_field", details={"field": field}) from exc


def system_principal(tenant_id: int, tenant_slug: str) -> Principal:
    """The evaluator acting in a tenant: it publishes notifications and keeps the alert stream."""
    return Principal(tenant_id=tenant_id, tenant_slug=tenant_slug, actor="system:alerts",
                     permissions=frozenset({READ, PUBLISH, MANAGE}))


def alert_stream_name() -> str:
    """The per-tenant stream that carries alert.firing / alert.resolved notifications."""
    return str(current_app.config.get("ALERT_STREAM") or "bus.alerts")


def ensure_alert_stream(principal: Principal) -> str:
    """The tenant's alert stream, created (one partition, rule id as key) when missing; its name."""
    name = alert_stream_name()
    exists = db.session.execute(select(Stream.id).where(Stream.tenant_id == principal.tenant_id,
                                                        Stream.name == name)).first()
    if exists is None:
        try:
            streams.create_stream(principal, {"name": name, "partitions": 1,
                                              "description": "Alert notifications (alert.firing, alert.resolved)"})
        except Conflict:
            db.session.rollback()  # created meanwhile by a concurrent call: fine
    return name
