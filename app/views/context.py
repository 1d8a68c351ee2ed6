"""The console user's principal: the same tenant and role rules as the API."""
from __future__ import annotations

from flask import g, session

from app.security import Principal, principal_for_user

TENANT_SESSION_KEY = "tenant"


def console_principal() -> Principal:
    """The logged-in user acting in the tenant chosen in the session (or their only one)."""
    return principal_for_user(g.user, session.get(TENANT_SESSION_KEY))
