"""Console: webhook subscriptions; create, edit, pause, resume, rotate the secret, send a test event, delete;
the delivery log with every attempt.

Secrets (at creation and rotation) are rendered in the answer to the POST itself, never stored in the session
or a flash: reloading the page does not show them again.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.api.http import json_response
from app.security import MANAGE, READ, Principal
from app.services import console_charts, console_queries, subscription_ops, subscriptions, webhook_probe
from app.services.errors import ServiceError
from app.services.pagination import parse_limit
from app.views.console_actions import (
    PAGE_SIZE,
    act,
    acting,
    capabilities,
    checked,
    describe,
    integer,
    number,
    numbers,
    refuse,
    text,
    words,
)

logger = logging.getLogger(__name__)

DELIVERIES_PAGE = 20


def _settings(create: bool) -> dict[str, Any]:
    """The subscription form as the API's body (blank optional fields: defaults, or cleared when editing)."""
    body: dict[str, Any] = {"url": text("url") or "", "event_types": words("event_types"), "filter": text("filter"),
                            "ordered": checked("ordered"), "rate_limit_per_s": number("rate_limit_per_s"),
                            "retry_schedule": numbers("retry_schedule"), "timeout_s": number("timeout_s"),
                            "description": text("description")}
    max_in_flight = integer("max_in_flight")
    if max_in_flight is not None:
        body["max_in_flight"] = max_in_flight
    if create:
        body["stream"] = text("stream") or ""
    return body


class SubscriptionsView(BaseView):
    """Subscriptions of the tenant; Operators and Admins manage them."""

    route_base = "/console/subscriptions"
    default_view = "list"
    method_permission_name = {"list": "list", "detail": "show", "history": "show", "create": "add", "edit": "edit",
                              "pause": "edit", "resume": "edit", "rotate": "edit", "test_event": "edit",
                              "recover": "edit", "delete": "delete"}

    @expose("/")
    @has_access
    def list(self) -> str:
        """Subscriptions, oldest first, with status, failures and dead letters; the create form."""
        principal = acting(READ)
        args = request.args
        try:
            rows, nxt = subscriptions.list_subscriptions(principal, parse_limit(args.get("limit"), PAGE_SIZE),
                                                         args.get("cursor"), args.get("stream") or None,
                                                         args.get("status") or None)
        except ServiceError as exc:
            flash(describe(exc), "danger")
            rows, nxt = [], None
        dead = console_queries.dead_letter_counts(principal, [s.id for s in rows])
        return self.render_template("bus/subscriptions.html", tenant=principal.tenant_slug, next_cursor=nxt,
                                    subs=[subscriptions.subscription_to_json(s) for s in rows], dead=dead,
                                    streams=console_queries.stream_names(principal), statuses=subscriptions.STATUSES,
                                    stream=args.get("stream") or "", status=args.get("status") or "",
                                    **capabilities(principal))

    def _detail(self, principal: Principal, sub_id: str, secret: str | None = None,
                test: dict[str, Any] | None = None) -> str:
        args = request.args
        try:
            sub = subscriptions.get_subscription(principal, sub_id)
            deliveries, nxt = subscription_ops.list_deliveries(
                principal, sub.id, parse_limit(args.get("limit"), DELIVERIES_PAGE), args.get("cursor"),
                args.get("status") or None)
            history = console_charts.subscription_history(principal, sub.id)
        except ServiceError as exc:
            refuse(exc)
        return self.render_template("bus/subscription_detail.html", tenant=principal.tenant_slug,
                                    history=history, ranges=list(console_charts.RANGES),
                                    s=subscriptions.subscription_to_json(sub), secret=secret, test=test,
                                    deliveries=deliveries, next_cursor=nxt, status=args.get("status") or "",
                                    delivery_states=subscription_ops.DELIVERY_STATES,
                                    dead=console_queries.dead_letter_counts(principal, [sub.id]).get(sub.id, 0),
                                    **capabilities(principal))

    @expose("/<sub_id>")
    @has_access
    def detail(self, sub_id: str) -> str:
        """One subscription: settings, actions, and its delivery log (newest first, every attempt)."""
        return self._detail(acting(READ), sub_id)

    @expose("/<sub_id>/history")
    @has_access
    def history(self, sub_id: str) -> Response:
        """Attempts, success rate and average latency over a range as JSON (the page's charts poll it)."""
        principal = acting(READ)
        try:
            body = console_charts.subscription_history(principal, sub_id,
                                                       console_charts.parse_range(request.args.get("range")))
        except ServiceError as exc:
            refuse(exc)
        return json_response(body)

    @expose("/create", methods=["POST"])
    @has_access
    def create(self) -> Any:
        """Create a subscription and show its signing secret, this once."""
        principal = acting(MANAGE)
        try:
            sub, secret = subscriptions.create_subscription(principal, _settings(create=True))
        except ServiceError as exc:
            flash(describe(exc), "danger")
            return redirect(url_for("SubscriptionsView.list"))
        flash(f"Subscription {sub.id} created. Copy its secret now: it is not shown again.", "success")
        return self._detail(principal, sub.id, secret=secret)

    @expose("/<sub_id>/edit", methods=["POST"])
    @has_access
    def edit(self, sub_id: str) -> Response:
        """Change the subscription's settings (its stream cannot change)."""
        def work(principal: Principal) -> str:
            subscriptions.update_subscription(principal, sub_id, _settings(create=False))
            return "Subscription updated."

        return act(MANAGE, work, url_for("SubscriptionsView.detail", sub_id=sub_id))

    @expose("/<sub_id>/pause", methods=["POST"])
    @has_access
    def pause(self, sub_id: str) -> Response:
        """Stop deliveries; events wait in the log."""
        return act(MANAGE, lambda p: f"Paused ({subscription_ops.pause(p, sub_id).status}).",
                   url_for("SubscriptionsView.detail", sub_id=sub_id))

    @expose("/<sub_id>/resume", methods=["POST"])
    @has_access
    def resume(self, sub_id: str) -> Response:
        """Deliver again (a disabled subscription starts with a clean slate)."""
        return act(MANAGE, lambda p: f"Resumed ({subscription_ops.resume(p, sub_id).status}).",
                   url_for("SubscriptionsView.detail", sub_id=sub_id))

    @expose("/<sub_id>/rotate", methods=["POST"])
    @has_access
    def rotate(self, sub_id: str) -> Any:
        """A new signing secret, shown this once; the old one keeps signing during the grace period."""
        principal = acting(MANAGE)
        grace = integer("grace_s")
        try:
            sub, secret = subscription_ops.rotate_secret(principal, sub_id, {} if grace is None else {"grace_s": grace})
        except ServiceError as exc:
            if exc.status == 404:
                refuse(exc)
            flash(describe(exc), "danger")
            return redirect(url_for("SubscriptionsView.detail", sub_id=sub_id))
        flash("Secret rotated. Copy the new secret now: it is not shown again.", "success")
        return self._detail(principal, sub.id, secret=secret)

    @expose("/<sub_id>/test", methods=["POST"])
    @has_access
    def test_event(self, sub_id: str) -> Any:
        """Deliver a ``bus.test`` event straight to the URL (not published); show what the endpoint answered."""
        principal = acting(MANAGE)
        try:
            result = webhook_probe.send_test_event(principal, sub_id)
        except ServiceError as exc:
            if exc.status == 404:
                refuse(exc)
            flash(describe(exc), "danger")
            return redirect(url_for("SubscriptionsView.detail", sub_id=sub_id))
        outcome = f"HTTP {result['status_code']}" if result["status_code"] is not None else result["error"]
        flash(f"Test event {result['event_id']}: {outcome} in {result['duration_ms']:.0f} ms.",
              "success" if result["ok"] else "warning")
        return redirect(url_for("SubscriptionsView.detail", sub_id=sub_id))

    @expose("/<sub_id>/recover", methods=["POST"])
    @has_access
    def recover(self, sub_id: str) -> Response:
        """Deliver again every event of a window of the stream (a replay job)."""
        def work(principal: Principal) -> str:
            job, _ = subscription_ops.recover(principal, sub_id, {"since": text("since"), "until": text("until")})
            return f"Recover job {job.id} queued."

        return act(MANAGE, work, url_for("SubscriptionsView.detail", sub_id=sub_id))

    @expose("/<sub_id>/delete", methods=["POST"])
    @has_access
    def delete(self, sub_id: str) -> Response:
        """Delete the subscription with its deliveries and dead letters."""
        def work(principal: Principal) -> str:
            subscriptions.delete_subscription(principal, sub_id)
            return f"Subscription {sub_id} deleted."

        return act(MANAGE, work, url_for("SubscriptionsView.list"))
