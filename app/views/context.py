"""The console user's principal: the same tenant and role rules as the API."""
from __future__ import annotations

from flask import g, session

from app.security import Principal, principal_for_user
from app.services.errors import ServiceError
from app.services.tenants import switchable_tenants

TENANT_SESSION_KEY = "tenant"


def console_principal() -> Principal:
    """The logged-in user in the session's tenant; with none chosen (or a stale one), their first tenant."""
    try:
        return principal_for_user(g.user, session.get(TENANT_SESSION_KEY))
    except ServiceError as exc:
        if exc.code not in ("tenant_required", "tenant_not_found"):
            raise
    # Several tenants and no choice yet, or one no longer theirs: start in the first; the switcher changes it.
    choices = switchable_tenants(g.user)
    session.pop(TENANT_SESSION_KEY, None)
    if choices:
        session[TENANT_SESSION_KEY] = choices[0]
    return principal_for_user(g.user, session.get(TENANT_SESSION_KEY))
