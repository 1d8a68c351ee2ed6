"""Console: consumer groups with lag per partition, and offset resets behind a confirmation of what changes."""
from __future__ import annotations

import logging
from typing import Any

from flask import flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.api.http import json_response
from app.bus.envelope import ms_to_rfc3339
from app.security import MANAGE, READ, Principal
from app.services import console_charts, console_queries, event_browser, groups
from app.services.errors import Invalid, ServiceError
from app.services.pagination import parse_limit
from app.services.streams import get_stream
from app.views.console_actions import PAGE_SIZE, act, acting, capabilities, describe, integer, refuse, text

logger = logging.getLogger(__name__)

RESET_MODES = ("earliest", "latest", "time", "offsets")


def reset_target(partitions: int) -> Any:
    """The reset form as the API's ``to``: "earliest", "latest", {"time"} or {"offsets": [...]}."""
    mode = text("mode")
    if mode in ("earliest", "latest"):
        return mode
    if mode == "time":
        value = text("time")
        if value is None:
            raise Invalid("give the time to reset to", code="invalid_field", details={"field": "time"})
        return {"time": ms_to_rfc3339(event_browser.parse_time(value))}
    if mode == "offsets":
        offsets = [{"partition": p, "offset": value} for p in range(partitions)
                   if (value := integer(f"offset_{p}")) is not None]
        if not offsets:
            raise Invalid("give an offset for at least one partition", code="invalid_field",
                          details={"field": "offsets"})
        return {"offsets": offsets}
    raise Invalid(f"choose one of {', '.join(RESET_MODES)}", code="invalid_field", details={"field": "mode"})


def describe_target(to: Any) -> str:
    """A reset target in words, for the confirmation and the flash."""
    if isinstance(to, str):
        return f"the {to} offsets"
    if "time" in to:
        return f"the first events at or after {to['time']}"
    return "explicit offsets: " + ", ".join(f"partition {o['partition']} → {o['offset']}" for o in to["offsets"])


class GroupsView(BaseView):
    """The tenant's consumer groups; Operators and Admins can reset their offsets."""

    route_base = "/console/groups"
    default_view = "list"
    method_permission_name = {"list": "list", "detail": "show", "history": "show", "preview": "edit",
                              "reset": "edit"}

    @expose("/")
    @has_access
    def list(self) -> str:
        """Groups by stream then group, with total lag and lag per partition (paged)."""
        principal = acting(READ)
        stream = request.args.get("stream") or None
        try:
            page = console_queries.group_page(principal, parse_limit(request.args.get("limit"), PAGE_SIZE),
                                              request.args.get("cursor"), stream)
        except ServiceError as exc:
            flash(describe(exc), "danger")
            page = {"items": [], "next": None}
        return self.render_template("bus/groups.html", tenant=principal.tenant_slug, page=page, stream=stream,
                                    streams=console_queries.stream_names(principal), **capabilities(principal))

    @expose("/<stream>/<group>")
    @has_access
    def detail(self, stream: str, group: str) -> str:
        """One group: committed offset, end and lag per partition, its lag history chart, and the reset form."""
        principal = acting(READ)
        try:
            history = console_charts.group_lag_history(principal, stream, group)
            partitions = get_stream(principal, stream).partitions
        except ServiceError as exc:
            refuse(exc)
        return self.render_template("bus/group_detail.html", tenant=principal.tenant_slug, grp=history["current"],
                                    history=history, ranges=list(console_charts.RANGES), partitions=partitions,
                                    modes=RESET_MODES, **capabilities(principal))

    @expose("/<stream>/<group>/history")
    @has_access
    def history(self, stream: str, group: str) -> Response:
        """The group's lag history and current lag per partition as JSON (the page's chart polls it)."""
        principal = acting(READ)
        try:
            body = console_charts.group_lag_history(principal, stream, group,
                                                    console_charts.parse_range(request.args.get("range")))
        except ServiceError as exc:
            refuse(exc)
        return json_response(body)

    @expose("/<stream>/<group>/reset/preview", methods=["POST"])
    @has_access
    def preview(self, stream: str, group: str) -> Any:
        """The confirmation step: every partition's committed offset and lag before and after; changes nothing."""
        principal = acting(MANAGE)
        back = url_for("GroupsView.detail", stream=stream, group=group)
        try:
            partitions = get_stream(principal, stream).partitions
            to = reset_target(partitions)
            rows = console_queries.reset_preview(principal, stream, group, to)
        except ServiceError as exc:
            if exc.status == 404:
                refuse(exc)
            flash(describe(exc), "danger")
            return redirect(back)
        return self.render_template("bus/group_reset_confirm.html", tenant=principal.tenant_slug, stream=stream,
                                    group=group, rows=rows, to=to, target=describe_target(to),
                                    form=request.form.to_dict(), changes=sum(1 for r in rows if r["changed"]))

    @expose("/<stream>/<group>/reset", methods=["POST"])
    @has_access
    def reset(self, stream: str, group: str) -> Response:
        """Apply a confirmed reset (audited with the offsets before and after)."""
        def work(principal: Principal) -> str:
            to = reset_target(get_stream(principal, stream).partitions)
            view = groups.reset(principal, stream, group, {"to": to})
            return f"Group {group} on {stream} reset to {describe_target(to)}; lag is now {view['lag']}."

        return act(MANAGE, work, url_for("GroupsView.detail", stream=stream, group=group))
