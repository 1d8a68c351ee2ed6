"""Console: the list of the tenant's streams."""
from __future__ import annotations

from flask_appbuilder import BaseView, expose, has_access

from app.security import READ
from app.services import streams
from app.views.context import console_principal


class StreamsView(BaseView):
    """Streams with partition counts and event totals."""

    route_base = "/console/streams"
    default_view = "list"

    @expose("/")
    @has_access
    def list(self) -> str:
        """All streams of the current tenant."""
        principal = console_principal()
        principal.require(READ)
        items, _ = streams.list_streams(principal, limit=1000, cursor=None)
        rows = [streams.stream_to_json(s, with_partitions=True) for s in items]
        return self.render_template("bus/streams.html", streams=rows, tenant=principal.tenant_slug)
