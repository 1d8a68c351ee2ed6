"""Console: the audit log of the current tenant, filtered by user, action, target and time (see audit_query)."""
from __future__ import annotations

import logging

from flask import flash, request
from flask_appbuilder import BaseView, expose, has_access

from app.security import READ
from app.services import audit_query
from app.services.errors import ServiceError
from app.services.pagination import parse_limit
from app.views.console_actions import PAGE_SIZE, acting, capabilities, describe

logger = logging.getLogger(__name__)


class AuditView(BaseView):
    """Who did what to which thing, newest first (read-only for every role)."""

    route_base = "/console/audit"
    default_view = "list"
    method_permission_name = {"list": "list"}

    @expose("/")
    @has_access
    def list(self) -> str:
        """A keyset page of the tenant's audit records matching the filters."""
        principal = acting(READ)
        try:
            rows, nxt = audit_query.list_audit(principal, request.args,
                                               parse_limit(request.args.get("limit"), PAGE_SIZE),
                                               request.args.get("cursor"))
        except ServiceError as exc:
            flash(describe(exc), "danger")
            rows, nxt = [], None
        filters = {k: request.args.get(k, "") for k in audit_query.FILTERS}
        return self.render_template("bus/audit.html", tenant=principal.tenant_slug, next_cursor=nxt,
                                    rows=[audit_query.audit_to_json(r) for r in rows], filters=filters,
                                    **capabilities(principal))
