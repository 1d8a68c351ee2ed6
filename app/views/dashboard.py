"""Console: the live dashboard (Chart.js over Socket.IO ``/metrics``) and its last-hour snapshot."""
from __future__ import annotations

import logging

from flask import Response
from flask_appbuilder import BaseView, expose, has_access, permission_name

from app.api.http import json_response
from app.security import READ
from app.services import dashboard
from app.views.context import console_principal

logger = logging.getLogger(__name__)


class DashboardView(BaseView):
    """Events in, deliveries, consumer lag and dead letters of the current tenant, moving live."""

    route_base = "/console/dashboard"
    default_view = "list"

    @expose("/")
    @has_access
    def list(self) -> str:
        """The page; its script loads the snapshot, then follows the ``/metrics`` namespace."""
        principal = console_principal()
        principal.require(READ)
        return self.render_template("bus/dashboard.html", tenant=principal.tenant_slug)

    @expose("/snapshot")
    @has_access
    @permission_name("list")  # why: part of the page; whoever may see the page may read its figures
    def snapshot(self) -> Response:
        """The tenant's last hour as JSON (see app/services/dashboard.py for the shape)."""
        principal = console_principal()
        principal.require(READ)
        return json_response(dashboard.snapshot(principal))
