"""Console: streams with size and throughput; create, edit, delete; one stream's partitions and offsets."""
from __future__ import annotations

import logging
from typing import Any

from flask import flash, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.security import MANAGE, READ, Principal
from app.services import console_queries, streams
from app.services.errors import Invalid, ServiceError
from app.services.pagination import parse_limit
from app.views.console_actions import PAGE_SIZE, act, acting, capabilities, integer, refuse, text

logger = logging.getLogger(__name__)


def _stream_fields(create: bool) -> dict[str, Any]:
    """The stream form as the API's body: blank optional fields are left out (or cleared, when editing)."""
    body: dict[str, Any] = {}
    if create:
        body["name"] = text("name") or ""
    partitions = integer("partitions")
    if partitions is not None:
        body["partitions"] = partitions
    retention = integer("retention_ms")
    if retention is not None or not create:
        body["retention_ms"] = retention  # blank when editing: keep events forever
    for field in ("schema_subject", "description"):
        value = text(field)
        if value is not None or not create:
            body[field] = value
    return body


class StreamsView(BaseView):
    """Streams of the tenant: a paged list, a create form, and a page per stream."""

    route_base = "/console/streams"
    default_view = "list"
    # Viewers hold can_list / can_show only: FAB refuses them the add / edit / delete actions outright.
    method_permission_name = {"list": "list", "detail": "show", "create": "add", "edit": "edit",
                              "delete": "delete"}

    @expose("/")
    @has_access
    def list(self) -> str:
        """Streams of the current tenant with partitions, events kept and events per second (last minute)."""
        principal = acting(READ)
        try:
            rows, nxt = console_queries.stream_page(principal, parse_limit(request.args.get("limit"), PAGE_SIZE),
                                                    request.args.get("cursor"))
        except ServiceError as exc:
            flash(exc.message, "danger")
            rows, nxt = [], None
        return self.render_template("bus/streams.html", streams=rows, next_cursor=nxt, tenant=principal.tenant_slug,
                                    window_s=console_queries.THROUGHPUT_WINDOW_MS // 1000, **capabilities(principal))

    @expose("/<name>")
    @has_access
    def detail(self, name: str) -> str:
        """One stream: its settings, and every partition with low and high offsets."""
        principal = acting(READ)
        try:
            stream = console_queries.stream_detail(principal, name)
        except ServiceError as exc:
            refuse(exc)
        return self.render_template("bus/stream_detail.html", s=stream, tenant=principal.tenant_slug,
                                    window_s=console_queries.THROUGHPUT_WINDOW_MS // 1000, **capabilities(principal))

    @expose("/create", methods=["POST"])
    @has_access
    def create(self) -> Response:
        """Create a stream (Operators and Admins)."""
        def work(principal: Principal) -> str:
            stream = streams.create_stream(principal, _stream_fields(create=True))
            return f"Stream {stream.name} created with {stream.partitions} partitions."

        return act(MANAGE, work, url_for("StreamsView.list"))

    @expose("/<name>/edit", methods=["POST"])
    @has_access
    def edit(self, name: str) -> Response:
        """Change retention, description, schema subject, or grow the partitions."""
        def work(principal: Principal) -> str:
            streams.update_stream(principal, name, _stream_fields(create=False))
            return f"Stream {name} updated."

        return act(MANAGE, work, url_for("StreamsView.detail", name=name))

    @expose("/<name>/delete", methods=["POST"])
    @has_access
    def delete(self, name: str) -> Response:
        """Delete a stream with its events and groups; the name must be typed again to confirm."""
        def work(principal: Principal) -> str:
            if text("confirm") != name:
                streams.get_stream(principal, name)  # 404 first for another tenant's stream
                raise Invalid("type the stream's name to confirm the deletion", code="not_confirmed")
            streams.delete_stream(principal, name)
            return f"Stream {name} deleted."

        back = url_for("StreamsView.list") if text("confirm") == name else url_for("StreamsView.detail", name=name)
        return act(MANAGE, work, back)
