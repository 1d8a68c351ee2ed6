"""Console: alert rules (create, edit, silence, delete) and alerts, firing ones updated live over ``/metrics``.

New webhook secrets (at creation, or when an edit adds a webhook) are rendered in the answer to the POST
itself, never stored in the session or a flash.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.models.base import utcnow
from app.security import MANAGE, READ, Principal
from app.services import alert_history, alert_rules, alert_targets, console_queries
from app.services.errors import Invalid, ServiceError
from app.views.console_actions import PAGE_SIZE, act, acting, capabilities, checked, describe, integer, number, text

logger = logging.getLogger(__name__)

HISTORY_SIZE = 20
_TARGET_KEYS = ("stream", "group", "subscription", "process", "name")


def _notify() -> list[dict[str, str]]:
    """One target a line: a URL is a webhook, anything else an e-mail address."""
    lines = [line.strip() for line in (request.form.get("notify") or "").splitlines() if line.strip()]
    return [{"webhook": line} if line.startswith(("http://", "https://")) else {"email": line} for line in lines]


def _rule_form(create: bool) -> dict[str, Any]:
    """The rule form as the API's body (blank optional numbers: defaults when creating, unchanged when editing)."""
    body: dict[str, Any] = {"name": text("name") or "", "notify": _notify(), "description": text("description"),
                            "target": {k: text(f"target_{k}") for k in _TARGET_KEYS if text(f"target_{k}")}}
    threshold = number("threshold")
    if threshold is not None:
        body["threshold"] = threshold
    for field in ("for_s", "window_s"):
        value = integer(field)
        if value is not None:
            body[field] = value
    body["renotify_s"] = integer("renotify_s")
    if create:
        body["kind"] = text("kind") or ""
    else:
        body["enabled"] = checked("enabled")
    return body


class AlertsView(BaseView):
    """Alert rules and alerts of the tenant; Operators and Admins manage the rules, Viewers read."""

    route_base = "/console/alerts"
    default_view = "list"
    method_permission_name = {"list": "list", "create": "add", "edit": "edit", "silence": "edit",
                              "delete": "delete"}

    def _page(self, principal: Principal, secrets: dict[str, str] | None = None) -> str:
        args = request.args
        try:
            rules, nxt = alert_rules.list_rules(principal, PAGE_SIZE, args.get("cursor"))
            firing, _ = alert_history.list_alerts(principal, PAGE_SIZE, None, "firing")
            pending, _ = alert_history.list_alerts(principal, PAGE_SIZE, None, "pending")
            resolved, _ = alert_history.list_alerts(principal, HISTORY_SIZE, None, "resolved")
        except ServiceError as exc:
            flash(describe(exc), "danger")
            rules, nxt, firing, pending, resolved = [], None, [], [], []
        opened = alert_rules.open_alerts(principal.tenant_id, [r.id for r in rules])
        return self.render_template(
            "bus/alerts.html", tenant=principal.tenant_slug, next_cursor=nxt, secrets=secrets,
            rules=[alert_rules.rule_to_json(r, opened.get(r.id)) for r in rules], open_alerts=firing + pending,
            resolved=resolved, kinds=alert_targets.KINDS, streams=console_queries.stream_names(principal),
            **capabilities(principal))

    @expose("/")
    @has_access
    def list(self) -> str:
        """Rules with their state, open alerts (live), recent history; the create form for managers."""
        return self._page(acting(READ))

    @expose("/create", methods=["POST"])
    @has_access
    def create(self) -> Any:
        """Create a rule; show its webhooks' secrets this once."""
        principal = acting(MANAGE)
        try:
            rule, secrets = alert_rules.create_rule(principal, _rule_form(create=True))
        except ServiceError as exc:
            flash(describe(exc), "danger")
            return redirect(url_for("AlertsView.list"))
        flash(f"Alert rule {rule.name} created." + (" Copy the webhook secrets now: they are not shown again."
                                                    if secrets else ""), "success")
        return self._page(principal, secrets=secrets or None)

    @expose("/<rule_id>/edit", methods=["POST"])
    @has_access
    def edit(self, rule_id: str) -> Any:
        """Change a rule (not its kind)."""
        principal = acting(MANAGE)
        try:
            rule, secrets = alert_rules.update_rule(principal, rule_id, _rule_form(create=False))
        except ServiceError as exc:
            flash(describe(exc), "danger")
            return redirect(url_for("AlertsView.list"))
        flash(f"Alert rule {rule.name} updated.", "success")
        return self._page(principal, secrets=secrets or None) if secrets else redirect(url_for("AlertsView.list"))

    @expose("/<rule_id>/silence", methods=["POST"])
    @has_access
    def silence(self, rule_id: str) -> Response:
        """Silence for N minutes (blank or 0: lift the silence)."""
        def work(principal: Principal) -> str:
            minutes = integer("minutes")
            if minutes is not None and minutes < 0:
                raise Invalid("minutes must be 0 or more", code="invalid_field", details={"field": "minutes"})
            until = utcnow() + timedelta(minutes=minutes) if minutes else None
            rule = alert_rules.silence_rule(principal, rule_id, {"until": until.isoformat() if until else None})
            return f"{rule.name}: silenced until {until:%Y-%m-%d %H:%M}Z." if until else f"{rule.name}: silence lifted."

        return act(MANAGE, work, url_for("AlertsView.list"))

    @expose("/<rule_id>/delete", methods=["POST"])
    @has_access
    def delete(self, rule_id: str) -> Response:
        """Delete the rule with its history and managed webhook subscriptions."""
        def work(principal: Principal) -> str:
            alert_rules.delete_rule(principal, rule_id)
            return "Alert rule deleted."

        return act(MANAGE, work, url_for("AlertsView.list"))

