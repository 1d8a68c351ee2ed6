"""Console: the tenant switcher in the navbar — the session's tenant is one of the user's (an Admin's: any)."""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import flash, g, redirect, request, session, url_for
from flask_appbuilder import BaseView, expose, has_access, permission_name
from flask_login import current_user
from werkzeug.wrappers import Response

from app.security import READ, principal_for_user
from app.services.errors import ServiceError
from app.services.tenants import switchable_tenants
from app.views.context import TENANT_SESSION_KEY

logger = logging.getLogger(__name__)

def _tenant_menu() -> dict[str, Any] | None:
    """The navbar's switcher: the current tenant and the choices (None when logged out)."""
    if not current_user.is_authenticated:
        return None
    try:
        choices = switchable_tenants(current_user)
    except Exception:  # noqa: BLE001 - a navbar must render even when the database hiccups
        logger.warning("tenant menu unavailable", exc_info=True)
        return None
    chosen = session.get(TENANT_SESSION_KEY)
    return {"current": chosen if chosen in choices else (choices[0] if choices else None), "tenants": choices}


def _safe_next(target: str | None) -> str | None:
    """A same-site path to go back to, never another host (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


class TenantSwitchView(BaseView):
    """POST a tenant slug: it becomes the tenant every console page and the dashboard act in."""

    route_base = "/console/tenant"
    default_view = "switch"

    def create_blueprint(self, appbuilder: Any, endpoint: str | None = None, static_folder: str | None = None) -> Any:
        """FAB's blueprint, plus ``bus_tenant_menu()`` in every template (the navbar override calls it)."""
        blueprint = super().create_blueprint(appbuilder, endpoint=endpoint, static_folder=static_folder)
        blueprint.app_context_processor(lambda: {"bus_tenant_menu": _tenant_menu})
        return blueprint

    @expose("/", methods=["POST"])
    @has_access
    @permission_name("list")  # why: every role may choose among its own tenants; the choice is checked below
    def switch(self) -> Response:
        """Make ``tenant`` the session's tenant if the user may act in it (CSRF-checked by CSRFProtect)."""
        slug = request.form.get("tenant", "")
        back = _safe_next(request.form.get("next")) or url_for("DashboardView.list")
        try:
            principal = principal_for_user(g.user, slug)  # 404 for a tenant not theirs (an Admin's: any)
            principal.require(READ)
        except ServiceError:
            flash(f"You cannot work in tenant {slug!r}.", "danger")
            return redirect(back)
        session[TENANT_SESSION_KEY] = principal.tenant_slug
        logger.info("console: %s switched to tenant %s", principal.actor, principal.tenant_slug)
        return redirect(back)
