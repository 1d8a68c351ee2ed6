"""Console: the event browser (seek, order, filters, pretty JSON, export, live tail) and producing an event.

The live tail is a 2-second poll of this same page with ``format=json&tail=<cursor>`` (static/js/console.js):
the Socket.IO ``/live`` namespace does not exist yet. Swapping the poll for a subscription to ``/live`` later
changes only the script.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import jsonify, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.security import PUBLISH, READ, Principal
from app.services import console_queries, event_browser, publish
from app.services.errors import Invalid, ServiceError
from app.views.console_actions import act, acting, capabilities, describe, json_field, refuse, text

logger = logging.getLogger(__name__)

BROWSE_ARGS = ("stream", "partition", "order", "offset", "time", "type", "key", "q", "expr", "limit")


def _event_body() -> dict[str, Any]:
    """The produce form as one event of the publish API."""
    body: dict[str, Any] = {"type": text("type") or "", "data": json_field("data")}
    for field in ("key", "source", "subject"):
        value = text(field)
        if value is not None:
            body[field] = value
    if text("headers") is not None:
        headers = json_field("headers")
        if not isinstance(headers, dict):
            raise Invalid("headers must be a JSON object", code="invalid_field", details={"field": "headers"})
        body["headers"] = headers
    return body


class EventsView(BaseView):
    """Browse a stream's events; Operators and Admins can also produce one."""

    route_base = "/console/events"
    default_view = "browse"
    method_permission_name = {"browse": "list", "produce": "add"}

    @expose("/")
    @has_access
    def browse(self) -> Any:
        """A page of events (``format=json`` for scripts: the page, or with ``tail`` the events after it)."""
        principal = acting(READ)
        names = console_queries.stream_names(principal)
        stream = request.args.get("stream") or (names[0] if names else None)
        as_json = request.args.get("format") == "json"
        if as_json:
            return self._json(principal, stream)
        page, error = None, None
        if stream is not None:
            try:
                page = event_browser.browse(principal, stream, request.args)
            except ServiceError as exc:
                if exc.status == 404:
                    refuse(exc)
                error = describe(exc)
        args = {k: request.args.get(k, "") for k in BROWSE_ARGS}
        args["stream"] = stream or ""
        return self.render_template("bus/events.html", tenant=principal.tenant_slug, streams=names, stream=stream,
                                    page=page, error=error, args=args, orders=event_browser.ORDERS,
                                    **capabilities(principal))

    def _json(self, principal: Principal, stream: str | None) -> Response:
        if stream is None:
            return jsonify({"items": [], "next": None})
        try:
            tail_cursor = request.args.get("tail")
            if tail_cursor:
                return jsonify(event_browser.tail(principal, stream, tail_cursor))
            page = event_browser.browse(principal, stream, request.args)
        except ServiceError as exc:
            response = jsonify({"error": {"code": exc.code, "message": exc.message}})
            response.status_code = exc.status
            return response
        return jsonify({"items": page.items, "next": page.next, "tail": page.tail, "order": page.order})

    @expose("/produce", methods=["POST"])
    @has_access
    def produce(self) -> Response:
        """Publish one event to the chosen stream, through the same use case as ``POST .../events``."""
        stream = text("stream") or ""

        def work(principal: Principal) -> str:
            _, result = publish.publish_events(principal, stream, _event_body())
            placed = result["results"][0]
            return (f"Event {placed['id']} appended to {stream} at partition {placed['partition']}, "
                    f"offset {placed['offset']}.")

        return act(PUBLISH, work, url_for("EventsView.browse", stream=stream))
