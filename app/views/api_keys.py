"""Console: the tenant's API keys; create (the key shown once, in the answer to the POST) and revoke.

Like ``/api/v1/api-keys``, the page needs the manage permission: a Viewer gets 403, not a read-only list.
"""
from __future__ import annotations

import logging

from flask import flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose, has_access
from werkzeug.wrappers import Response

from app.security import MANAGE, SCOPES, Principal
from app.services import api_keys
from app.services.errors import ServiceError
from app.services.pagination import parse_limit
from app.views.console_actions import PAGE_SIZE, act, acting, capabilities, describe, text

logger = logging.getLogger(__name__)


class ApiKeysView(BaseView):
    """API keys of the current tenant."""

    route_base = "/console/api-keys"
    default_view = "list"
    method_permission_name = {"list": "list", "create": "add", "revoke": "delete"}

    def _page(self, principal: Principal, created: dict[str, object] | None = None) -> str:
        try:
            rows, nxt = api_keys.list_api_keys(principal, parse_limit(request.args.get("limit"), PAGE_SIZE),
                                               request.args.get("cursor"))
        except ServiceError as exc:
            flash(describe(exc), "danger")
            rows, nxt = [], None
        keys = [api_keys.api_key_to_json(k, principal.tenant_slug) for k in rows]
        return self.render_template("bus/api_keys.html", tenant=principal.tenant_slug, keys=keys, next_cursor=nxt,
                                    created=created, scopes=SCOPES, **capabilities(principal))

    @expose("/")
    @has_access
    def list(self) -> str:
        """Keys (revoked ones marked) with prefix, scopes and last use; never the keys themselves."""
        return self._page(acting(MANAGE))

    @expose("/create", methods=["POST"])
    @has_access
    def create(self) -> str | Response:
        """Create a key and show it in this answer only: it is stored hashed."""
        principal = acting(MANAGE)
        body = {"name": text("name") or "", "scopes": request.form.getlist("scopes")}
        try:
            row, slug, key = api_keys.create_api_key(principal, body)
        except ServiceError as exc:
            flash(describe(exc), "danger")
            return redirect(url_for("ApiKeysView.list"))
        return self._page(principal, created=api_keys.api_key_to_json(row, slug, key))

    @expose("/<key_id>/revoke", methods=["POST"])
    @has_access
    def revoke(self, key_id: str) -> Response:
        """Revoke a key: it is refused with 401 from now on."""
        def work(principal: Principal) -> str:
            api_keys.revoke_api_key(principal, key_id)
            return f"API key {key_id} revoked."

        return act(MANAGE, work, url_for("ApiKeysView.list"))
