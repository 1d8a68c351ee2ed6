"""First start: roles, permissions, the default tenant and the admin user (``flask bus init``)."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from flask import current_app

from app.extensions import db
from app.security import ROLE_ADMIN, ROLES
from app.services.tenants import add_member, ensure_tenant

logger = logging.getLogger(__name__)

DEFAULT_TENANT = "default"


@dataclass
class InitResult:
    """What ``init_bus`` did; ``generated_password`` is set only when it made one up."""

    created_admin: bool
    generated_password: str | None


def init_bus(admin_password: str | None = None, admin_username: str = "admin") -> InitResult:
    """Sync permissions and roles, create tenant ``default`` and user ``admin`` (idempotent)."""
    appbuilder = current_app.appbuilder
    sm = appbuilder.sm
    for role in (*ROLES, sm.auth_role_public):
        sm.add_role(role)
    appbuilder.add_permissions(update_perms=True)  # after the roles: it grants them to Admin
    tenant = ensure_tenant(DEFAULT_TENANT, "Default")
    generated = None
    created = False
    if sm.find_user(username=admin_username) is None:
        password = admin_password or current_app.config.get("ADMIN_PASSWORD")
        if not password:
            password = generated = secrets.token_urlsafe(12)
        user = sm.add_user(admin_username, "Admin", "User", f"{admin_username}@localhost",
                           sm.find_role(ROLE_ADMIN), password=password)
        if not user:
            raise RuntimeError("could not create the admin user")
        add_member(user.id, tenant.id)
        created = True
    db.session.commit()
    return InitResult(created_admin=created, generated_password=generated)
