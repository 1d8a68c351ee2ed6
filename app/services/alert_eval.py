"""Alert evaluation: measure each enabled rule and move its alert pending -> firing -> resolved.

Safe to run twice at once (beat ticks overlapping, two workers): every state change is a conditional
UPDATE (``... WHERE state = 'pending'``, ``... WHERE last_notified_at IS NULL``) and only the run whose
update changed the row notifies, so nobody is told twice. A rule has at most one open alert (a unique
``open_rule_id``). The change is committed before notifying: a crash in between loses that notification
(it is logged) rather than sending it twice.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import AlertRule, Tenant
from app.models.alert import FIRING, PENDING, RESOLVED, Alert
from app.models.base import new_id, utcnow
from app.services import alert_conditions, alert_notify
from app.services.alert_rules import is_silenced
from app.services.windows import as_utc

logger = logging.getLogger(__name__)


def evaluate(now: datetime | None = None, kinds: Iterable[str] | None = None,
             tenant_id: int | None = None) -> dict[str, int]:
    """Evaluate every enabled rule (of ``kinds``, of one tenant); counts of outcomes, e.g. ``{"fired": 1}``."""
    now = as_utc(now) if now is not None else utcnow()
    query = select(AlertRule.id).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)
    if kinds is not None:
        query = query.where(AlertRule.kind.in_(list(kinds)))
    if tenant_id is not None:
        query = query.where(AlertRule.tenant_id == tenant_id)
    rule_ids = list(db.session.execute(query).scalars())
    db.session.commit()
    outcomes: Counter[str] = Counter()
    for rule_id in rule_ids:
        try:
            outcomes[evaluate_rule(rule_id, now)] += 1
        except Exception:  # noqa: BLE001 - one broken rule must not stop the others
            db.session.rollback()
            outcomes["error"] += 1
            logger.exception("alert rule %s: evaluation failed", rule_id)
    return dict(outcomes)


def _changed(stmt: Any) -> bool:
    """Run a conditional UPDATE/DELETE and commit; True when this run changed the row."""
    done = db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return bool(done)


def evaluate_rule(rule_id: str, now: datetime) -> str:
    """Evaluate one rule at ``now``; what happened (ok, pending, fired, renotified, resolved, cleared, ...)."""
    rule = db.session.get(AlertRule, rule_id)
    if rule is None or not rule.enabled:
        return "skipped"
    slug = db.session.execute(select(Tenant.slug).where(Tenant.id == rule.tenant_id)).scalar_one()
    value = alert_conditions.measure(rule, slug, now)
    breached = alert_conditions.breached(rule.kind, value, rule.threshold)
    alert = db.session.execute(select(Alert).where(Alert.open_rule_id == rule.id)).scalar_one_or_none()
    # Snapshots from here on: the database is changed only by the conditional statements below, never by
    # a flush of these objects (which could overwrite what a concurrent evaluator just wrote).
    db.session.expunge(rule)
    if alert is not None:
        db.session.expunge(alert)
    if not breached:
        return "ok" if alert is None else _clear(rule, alert, slug, value, now)
    if alert is None:
        alert = Alert(id=new_id(), tenant_id=rule.tenant_id, rule_id=rule.id, open_rule_id=rule.id, state=PENDING,
                      since=now, value=value, notifications=0)
        db.session.add(alert)
        try:
            db.session.commit()
        except IntegrityError:  # another evaluator opened it a moment ago: its run carries on from here
            db.session.rollback()
            return "raced"
        db.session.refresh(alert)
        db.session.expunge(alert)
        alert_notify.emit_live(rule.tenant_id, alert_notify.payload(rule, alert, slug))
    elif alert.value != value:
        _changed(update(Alert).where(Alert.id == alert.id).values(value=value))
        alert.value = value
    outcome = "pending"
    if alert.state == PENDING and as_utc(alert.since) <= now - timedelta(seconds=rule.for_s):
        if not _changed(update(Alert).where(Alert.id == alert.id, Alert.state == PENDING)
                        .values(state=FIRING, fired_at=now)):
            return "raced"
        alert.state, alert.fired_at, outcome = FIRING, now, "fired"
        alert_notify.emit_live(rule.tenant_id, alert_notify.payload(rule, alert, slug))
    if alert.state == FIRING:
        return _maybe_notify(rule, alert, slug, now, outcome)
    return outcome


def _maybe_notify(rule: AlertRule, alert: Alert, slug: str, now: datetime, outcome: str) -> str:
    """Notify a firing alert never notified (or silenced until now), or due again after ``renotify_s``."""
    if is_silenced(rule, now):
        return "silenced" if outcome == "fired" else "firing"
    due = Alert.last_notified_at.is_(None)
    if rule.renotify_s:
        due = or_(due, Alert.last_notified_at <= now - timedelta(seconds=rule.renotify_s))
    again = alert.last_notified_at is not None
    if not _changed(update(Alert).where(Alert.id == alert.id, Alert.state == FIRING, due)
                    .values(last_notified_at=now, notifications=Alert.notifications + 1)):
        return outcome if outcome == "fired" else "firing"
    alert.last_notified_at = now
    alert_notify.notify(rule, slug, alert_notify.payload(rule, alert, slug, renotification=again))
    return "renotified" if again else "fired"


def _clear(rule: AlertRule, alert: Alert, slug: str, value: float | None, now: datetime) -> str:
    """The condition is gone: a pending alert is dropped, a firing one resolves (notified if it was notified)."""
    if alert.state == PENDING:
        # Never fired, nothing was said: a blip shorter than for_s leaves no history.
        _changed(delete(Alert).where(Alert.id == alert.id, Alert.state == PENDING))
        alert.state = RESOLVED
        alert_notify.emit_live(rule.tenant_id, alert_notify.payload(rule, alert, slug))
        return "cleared"
    if not _changed(update(Alert).where(Alert.id == alert.id, Alert.state == FIRING)
                    .values(state=RESOLVED, resolved_at=now, open_rule_id=None, value=value)):
        return "raced"
    was_notified = alert.last_notified_at is not None
    alert.state, alert.resolved_at, alert.value = RESOLVED, now, value
    data = alert_notify.payload(rule, alert, slug)
    alert_notify.emit_live(rule.tenant_id, data)
    if was_notified and not is_silenced(rule, now):
        _changed(update(Alert).where(Alert.id == alert.id).values(notifications=Alert.notifications + 1))
        alert_notify.notify(rule, slug, data)
    return "resolved"
