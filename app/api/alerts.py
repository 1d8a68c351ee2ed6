"""``/api/v1/alert-rules`` and ``/api/v1/alerts``: alert rules, silences, and alert instances (API.md "Alerts")."""
from __future__ import annotations

import logging

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, no_content, parse_object
from app.security import MANAGE, READ, current_principal, require
from app.services import alert_history, alert_rules
from app.services.pagination import parse_limit

logger = logging.getLogger(__name__)


class AlertRulesApi(BusApi):
    """Alert rules of the caller's tenant."""

    resource_name = "alert-rules"
    openapi_spec_tag = "Alerts"

    @expose("", methods=("POST",))
    @require(MANAGE)
    def create(self) -> Response:
        """Create an alert rule; each webhook's signing secret is in this answer only.
        ---
        post:
          summary: Create an alert rule
          responses:
            201: {description: "the rule; each `notify` webhook with its managed `subscription` and `secret`"}
            404: {description: no such stream or subscription in the target}
            409: {description: a rule of that name exists}
            422: {description: "invalid field, invalid_target, unsafe_url, smtp_not_configured"}
        """
        rule, secrets = alert_rules.create_rule(current_principal(), parse_object())
        return json_response(alert_rules.rule_to_json(rule, None, secrets), 201)

    @expose("", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """List the tenant's rules by name, each with its current state (``?limit=&cursor=``).
        ---
        get:
          summary: List alert rules
          responses:
            200: {description: "{items, next}"}
        """
        principal = current_principal()
        rows, nxt = alert_rules.list_rules(principal, parse_limit(request.args.get("limit")),
                                           request.args.get("cursor"))
        opened = alert_rules.open_alerts(principal.tenant_id, [r.id for r in rows])
        return json_response({"items": [alert_rules.rule_to_json(r, opened.get(r.id)) for r in rows], "next": nxt})

    @expose("/<rule_id>", methods=("GET",))
    @require(READ)
    def get(self, rule_id: str) -> Response:
        """Show a rule with its current state.
        ---
        get:
          summary: Show an alert rule
          responses:
            200: {description: the rule}
            404: {description: no such rule}
        """
        principal = current_principal()
        rule = alert_rules.get_rule(principal, rule_id)
        return json_response(alert_rules.rule_to_json(rule, alert_rules.open_alerts(principal.tenant_id,
                                                                                    [rule.id]).get(rule.id)))

    @expose("/<rule_id>", methods=("PATCH",))
    @require(MANAGE)
    def patch(self, rule_id: str) -> Response:
        """Change a rule (not its kind); new webhooks' secrets are in this answer only.
        ---
        patch:
          summary: Change an alert rule
          responses:
            200: {description: the rule}
            404: {description: no such rule}
            409: {description: a rule of that name exists}
            422: {description: invalid change}
        """
        rule, secrets = alert_rules.update_rule(current_principal(), rule_id, parse_object())
        return json_response(alert_rules.rule_to_json(rule, None, secrets))

    @expose("/<rule_id>", methods=("DELETE",))
    @require(MANAGE)
    def delete(self, rule_id: str) -> Response:
        """Delete a rule, its alert history and its managed webhook subscriptions.
        ---
        delete:
          summary: Delete an alert rule
          responses:
            204: {description: deleted}
            404: {description: no such rule}
        """
        alert_rules.delete_rule(current_principal(), rule_id)
        return no_content()

    @expose("/<rule_id>/silence", methods=("POST",))
    @require(MANAGE)
    def silence(self, rule_id: str) -> Response:
        """Silence the rule's notifications until ``until`` (``null`` lifts the silence).
        ---
        post:
          summary: Silence an alert rule
          responses:
            200: {description: the rule}
            404: {description: no such rule}
            422: {description: until missing, not RFC 3339, or not in the future}
        """
        rule = alert_rules.silence_rule(current_principal(), rule_id, parse_object())
        return json_response(alert_rules.rule_to_json(rule))


class AlertsApi(BusApi):
    """Alert instances (episodes of a rule's condition) of the caller's tenant."""

    resource_name = "alerts"
    openapi_spec_tag = "Alerts"

    @expose("", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """Alerts, most recent first (``?state=pending|firing|resolved&rule=&limit=&cursor=``).
        ---
        get:
          summary: List alerts
          responses:
            200: {description: "{items: [{id, rule, rule_name, kind, state, since, value, ...}], next}"}
            400: {description: unknown state}
        """
        args = request.args
        items, nxt = alert_history.list_alerts(current_principal(), parse_limit(args.get("limit")),
                                               args.get("cursor"), args.get("state") or None,
                                               args.get("rule") or None)
        return json_response({"items": items, "next": nxt})
