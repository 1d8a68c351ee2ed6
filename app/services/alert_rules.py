"""Alert rule use cases: create, list, show, change, silence, delete (API.md "Alerts").

A ``{"webhook": url}`` target is a managed subscription of the tenant's alert stream (ALERT_STREAM,
created on demand), filtered to the rule: notifications are signed, retried, dead-lettered and
replayable like any delivery. The rule keeps each webhook's subscription id in step with its ``notify``.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select, update

from app.extensions import db
from app.models import AlertRule, Subscription
from app.models.alert import FIRING, OPEN_STATES, PENDING, RESOLVED, Alert
from app.models.base import new_id, utcnow
from app.security import Principal
from app.services import alert_targets, audit, subscriptions
from app.services.errors import Conflict, Invalid, NotFound
from app.services.pagination import decode_cursor, encode_cursor
from app.services.validation import check_keys, check_optional_str
from app.services.webhook_checks import check_bool
from app.services.windows import as_utc, parse_time

logger = logging.getLogger(__name__)

PATCH_FIELDS = {"name", "target", "threshold", "for_s", "window_s", "renotify_s", "notify", "description", "enabled"}
CREATE_FIELDS = PATCH_FIELDS | {"kind"}


def get_rule(principal: Principal, rule_id: str) -> AlertRule:
    """The tenant's rule; 404 when absent or another tenant's."""
    rule = db.session.execute(
        select(AlertRule).where(AlertRule.tenant_id == principal.tenant_id, AlertRule.id == rule_id)
    ).scalar_one_or_none()
    if rule is None:
        raise NotFound(f"no alert rule {rule_id!r}", code="alert_rule_not_found", details={"id": rule_id})
    return rule


def list_rules(principal: Principal, limit: int, cursor: str | None) -> tuple[list[AlertRule], str | None]:
    """The tenant's rules by name, one page at a time."""
    query = select(AlertRule).where(AlertRule.tenant_id == principal.tenant_id)
    state = decode_cursor(cursor)
    if state:
        query = query.where(AlertRule.name > str(state.get("after", "")))
    rows = list(db.session.execute(query.order_by(AlertRule.name).limit(limit + 1)).scalars())
    nxt = encode_cursor({"after": rows[limit - 1].name}) if len(rows) > limit else None
    return rows[:limit], nxt


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise Invalid("name must be a non-blank string of at most 200 characters", code="invalid_field",
                      details={"field": "name"})
    return value.strip()


def _name_free(principal: Principal, name: str, rule_id: str | None = None) -> None:
    query = select(AlertRule.id).where(AlertRule.tenant_id == principal.tenant_id, AlertRule.name == name)
    if rule_id is not None:
        query = query.where(AlertRule.id != rule_id)
    if db.session.execute(query).first() is not None:
        raise Conflict(f"alert rule {name!r} exists", code="alert_rule_exists", details={"name": name})


def _settings(principal: Principal, kind: str, body: dict[str, Any], current: AlertRule | None) -> dict[str, Any]:
    """Every checked setting of a create (defaults filled) or a patch (only what the body holds)."""
    values: dict[str, Any] = {}
    if "name" in body or current is None:
        values["name"] = _check_name(body.get("name"))
    if "target" in body or current is None:
        values["target"] = alert_targets.check_target(principal, kind, body.get("target"))
    if "threshold" in body or current is None:
        values["threshold"] = alert_targets.check_threshold(kind, body.get("threshold"), "threshold" in body)
    for field in ("for_s", "window_s", "renotify_s"):
        if field in body or current is None:
            values[field] = alert_targets.check_duration(field, body.get(field, alert_targets.DEFAULTS[field]))
    if "notify" in body or current is None:
        values["notify"] = alert_targets.check_notify(body.get("notify", []))
    if "description" in body or current is None:
        values["description"] = check_optional_str(body.get("description"), "description", 10_000)
    if "enabled" in body or current is None:
        values["enabled"] = check_bool(body.get("enabled", True), "enabled")
    return values


def _subscribe(principal: Principal, rule_id: str, rule_name: str, url: str) -> tuple[str, str]:
    """A managed subscription of the alert stream for one webhook of a rule: (id, secret shown once)."""
    stream = alert_targets.ensure_alert_stream(principal)
    sub, secret = subscriptions.create_subscription(principal, {
        "stream": stream, "url": url, "event_types": ["alert.*"],
        # The rule id is ours (a UUID): nothing a caller typed goes into the expression.
        "filter": f'data.rule_id == "{rule_id}"',
        "description": f"alert rule {rule_name} ({rule_id})",
    })
    return sub.id, secret


def _unsubscribe(principal: Principal, subscription_id: str | None) -> None:
    if not subscription_id:
        return
    try:
        subscriptions.delete_subscription(principal, subscription_id)
    except NotFound:
        pass  # already deleted by hand


def _sync_webhooks(principal: Principal, rule_id: str, rule_name: str, wanted: list[dict[str, str]],
                   before: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """The stored ``notify`` for ``wanted``: kept webhooks keep their subscription, new ones get one.

    Returns (stored list, subscription ids no longer wanted, {url: secret} of the new ones).
    """
    existing = {n["webhook"]: n.get("subscription") for n in before if "webhook" in n}
    stored: list[dict[str, Any]] = []
    secrets: dict[str, str] = {}
    for item in wanted:
        if "webhook" not in item:
            stored.append(dict(item))
            continue
        url = item["webhook"]
        sub_id = existing.pop(url, None)
        if sub_id is None or db.session.get(Subscription, sub_id) is None:
            sub_id, secrets[url] = _subscribe(principal, rule_id, rule_name, url)
        stored.append({"webhook": url, "subscription": sub_id})
    return stored, [s for s in existing.values() if s], secrets


def create_rule(principal: Principal, body: dict[str, Any]) -> tuple[AlertRule, dict[str, str]]:
    """Create a rule (and a managed subscription per webhook); returns it and each new webhook's secret."""
    check_keys(body, CREATE_FIELDS)
    kind = alert_targets.check_kind(body.get("kind"))
    values = _settings(principal, kind, body, None)
    _name_free(principal, values["name"])
    rule_id = new_id()
    # Subscriptions first: each commits, and on SQLite the log's connection must not wait for a flushed row of ours.
    notify, _, secrets = _sync_webhooks(principal, rule_id, values["name"], values.pop("notify"), [])
    rule = AlertRule(id=rule_id, tenant_id=principal.tenant_id, kind=kind, notify=notify, **values)
    db.session.add(rule)
    db.session.flush()
    audit.record(principal, "alert_rule.create", "alert_rule", rule.id,
                 {"name": rule.name, "kind": kind, "target": rule.target, "threshold": rule.threshold,
                  "notify": notify})
    db.session.commit()
    logger.info("alert rule %s (%s) of %s created by %s", rule.id, kind, principal.tenant_slug, principal.actor)
    return rule, secrets


def update_rule(principal: Principal, rule_id: str, body: dict[str, Any]) -> tuple[AlertRule, dict[str, str]]:
    """Change a rule (its kind cannot change); webhooks added get a subscription, removed ones lose theirs."""
    if "kind" in body:
        raise Invalid("a rule's kind cannot change: create a new rule", code="immutable_field",
                      details={"field": "kind"})
    check_keys(body, PATCH_FIELDS)
    rule = get_rule(principal, rule_id)
    values = _settings(principal, rule.kind, body, rule)
    if "name" in values:
        _name_free(principal, values["name"], rule.id)
    secrets: dict[str, str] = {}
    if "notify" in values:
        before = list(rule.notify or [])
        db.session.commit()  # release our read before the subscriptions' own commits (SQLite)
        values["notify"], dropped, secrets = _sync_webhooks(principal, rule.id, values.get("name", rule.name),
                                                            values["notify"], before)
        for sub_id in dropped:
            _unsubscribe(principal, sub_id)
        rule = get_rule(principal, rule_id)
    changes: dict[str, Any] = {}
    for field, value in values.items():
        if getattr(rule, field) != value:
            changes[field] = [getattr(rule, field), value]
            setattr(rule, field, value)
    if changes:
        audit.record(principal, "alert_rule.update", "alert_rule", rule.id, changes)
    if changes.get("enabled") == [True, False]:
        _close_open_alerts(rule.id)
    db.session.commit()
    return rule, secrets


def _close_open_alerts(rule_id: str) -> None:
    """A rule switched off stops watching: its pending alert goes, a firing one is resolved (not notified)."""
    now = utcnow()
    db.session.execute(delete(Alert).where(Alert.rule_id == rule_id, Alert.state == PENDING)
                       .execution_options(synchronize_session=False))
    db.session.execute(update(Alert).where(Alert.rule_id == rule_id, Alert.state == FIRING)
                       .values(state=RESOLVED, resolved_at=now, open_rule_id=None)
                       .execution_options(synchronize_session=False))


def silence_rule(principal: Principal, rule_id: str, body: dict[str, Any]) -> AlertRule:
    """Silence notifications until ``until`` (null: lift the silence); the rule keeps evaluating."""
    check_keys(body, {"until"})
    if "until" not in body:
        raise Invalid("until is required (an RFC 3339 time, or null to lift the silence)", code="invalid_field",
                      details={"field": "until"})
    until = parse_time(body["until"], "until")
    now = utcnow()
    if until is not None and until <= now:
        raise Invalid("until must be in the future (null lifts the silence)", code="invalid_field",
                      details={"field": "until"})
    rule = get_rule(principal, rule_id)
    audit.record(principal, "alert_rule.silence", "alert_rule", rule.id,
                 {"from": rule.silenced_until.isoformat() if rule.silenced_until else None,
                  "until": until.isoformat() if until else None})
    rule.silenced_until = until
    db.session.commit()
    return rule


def delete_rule(principal: Principal, rule_id: str) -> None:
    """Delete a rule with its alert history and its managed webhook subscriptions."""
    rule = get_rule(principal, rule_id)
    sub_ids = [n.get("subscription") for n in rule.notify or [] if "webhook" in n]
    audit.record(principal, "alert_rule.delete", "alert_rule", rule.id, {"name": rule.name, "kind": rule.kind})
    db.session.delete(rule)
    db.session.commit()
    for sub_id in sub_ids:
        _unsubscribe(principal, sub_id)
    logger.info("alert rule %s deleted by %s", rule_id, principal.actor)


def open_alerts(tenant_id: int, rule_ids: list[str]) -> dict[str, Alert]:
    """The open (pending or firing) alert of each of these rules."""
    if not rule_ids:
        return {}
    rows = db.session.execute(select(Alert).where(Alert.tenant_id == tenant_id, Alert.rule_id.in_(rule_ids),
                                                  Alert.state.in_(OPEN_STATES))).scalars()
    return {a.rule_id: a for a in rows}


def is_silenced(rule: AlertRule, now: Any = None) -> bool:
    """True while the rule's silence lasts."""
    return rule.silenced_until is not None and as_utc(rule.silenced_until) > (now or utcnow())


def rule_to_json(rule: AlertRule, open_alert: Alert | None = None, secrets: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """The API's view of a rule, with its current state (``ok`` when no alert is open); secrets only when new."""
    notify = []
    for item in rule.notify or []:
        entry = dict(item)
        if secrets and entry.get("webhook") in secrets:
            entry["secret"] = secrets[entry["webhook"]]
        notify.append(entry)
    return {
        "id": rule.id, "name": rule.name, "kind": rule.kind, "target": rule.target, "threshold": rule.threshold,
        "for_s": rule.for_s, "window_s": rule.window_s, "renotify_s": rule.renotify_s, "notify": notify,
        "description": rule.description, "enabled": rule.enabled, "silenced_until": rule.silenced_until,
        "silenced": is_silenced(rule), "state": open_alert.state if open_alert else "ok",
        "value": open_alert.value if open_alert else None,
        "created_at": rule.created_at, "updated_at": rule.updated_at,
    }
