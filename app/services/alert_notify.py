"""Alert notifications: a CloudEvent on the tenant's alert stream (delivered to the rule's webhooks by the
dispatcher, signed and retried like any delivery), an e-mail task per address, and a live ``alert`` event
to the console's ``/metrics`` room of the tenant.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from app.bus.ids import new_id
from app.models import AlertRule
from app.models.alert import Alert
from app.services import alert_email, publish, tasks
from app.services.alert_targets import ensure_alert_stream, system_principal
from app.services.windows import iso

logger = logging.getLogger(__name__)

ALERT_SOCKET_EVENT = "alert"
EVENT_SOURCE = "/apg-bus/alerts"


def alert_to_json(alert: Alert, rule: AlertRule | None = None) -> dict[str, Any]:
    """The API's view of an alert instance (its rule's name, kind and threshold when the rule is at hand)."""
    out: dict[str, Any] = {
        "id": alert.id, "rule": alert.rule_id, "state": alert.state, "since": alert.since, "value": alert.value,
        "fired_at": alert.fired_at, "resolved_at": alert.resolved_at, "last_notified_at": alert.last_notified_at,
        "notifications": alert.notifications,
    }
    if rule is not None:
        out.update({"rule_name": rule.name, "kind": rule.kind, "target": rule.target, "threshold": rule.threshold})
    return out


def payload(rule: AlertRule, alert: Alert, slug: str, renotification: bool = False) -> dict[str, Any]:
    """The data of an alert notification (the CloudEvent's ``data``, the e-mail's fields, the socket event)."""
    return {
        "alert_id": alert.id, "rule_id": rule.id, "rule_name": rule.name, "kind": rule.kind, "target": rule.target,
        "threshold": rule.threshold, "value": alert.value, "state": alert.state, "since": iso(alert.since),
        "fired_at": iso(alert.fired_at), "resolved_at": iso(alert.resolved_at), "tenant": slug,
        "renotification": renotification,
    }


def notify(rule: AlertRule, slug: str, data: dict[str, Any]) -> None:
    """Send a firing or resolved notification to every target of the rule; a failing channel does not stop the rest."""
    if any("webhook" in n for n in rule.notify or []):
        try:
            _publish(rule, slug, data)
        except Exception:  # noqa: BLE001 - logged; e-mail and the console still learn of it
            logger.exception("alert %s: publishing the notification failed", data["alert_id"])
    emails = [n["email"] for n in rule.notify or [] if "email" in n]
    if emails:
        message = alert_email.compose(data)
        for address in emails:
            try:
                tasks.enqueue("alerts.send_email", address, message)
            except Exception:  # noqa: BLE001 - the broker away: logged, the others still go
                logger.exception("alert %s: e-mail to %s not enqueued", data["alert_id"], address)


def _publish(rule: AlertRule, slug: str, data: dict[str, Any]) -> None:
    principal = system_principal(rule.tenant_id, slug)
    stream = ensure_alert_stream(principal)
    event = {"id": new_id(), "type": f"alert.{data['state']}", "source": EVENT_SOURCE,
             "subject": rule.name, "key": rule.id, "data": data}
    publish.publish_events(principal, stream, event)


def emit_live(tenant_id: int, data: dict[str, Any]) -> None:
    """Tell the tenant's open consoles (``/metrics`` room); through Redis when the emitter is a worker."""
    from app.extensions import socketio
    from app.sockets.metrics import room_of

    try:
        socketio.emit(ALERT_SOCKET_EVENT, data, namespace="/metrics", to=room_of(tenant_id))
    except Exception:  # noqa: BLE001 - a console update is a courtesy: never fail the evaluation for it
        logger.warning("alert %s: live update not emitted", data.get("alert_id"), exc_info=True)


def at(value: datetime | None) -> str | None:
    """RFC 3339 of a stored time (for templates and payloads)."""
    return iso(value)
