"""FAB's security manager with sign-ins (console form and ``/api/v1/security/login``) in the audit log.

Enabled by ``FAB_SECURITY_MANAGER_CLASS = "app.security_manager.BusSecurityManager"`` in config.py.
"""
from __future__ import annotations

import logging
from typing import Any

from flask_appbuilder.security.sqla.manager import SecurityManager
from sqlalchemy import select

from app.extensions import db
from app.models import user_tenants

logger = logging.getLogger(__name__)


class BusSecurityManager(SecurityManager):
    """Records every successful and failed sign-in as an audit record."""

    def on_user_login(self, user: Any) -> None:
        """A user signed in."""
        self._audit_sign_in(user, "user.login")

    def on_user_login_failed(self, user: Any) -> None:
        """A known user gave a wrong password."""
        self._audit_sign_in(user, "user.login_failed")

    def _audit_sign_in(self, user: Any, action: str) -> None:
        from app.services import audit  # app.services imports app.security; keep FAB's boot import-light

        try:
            # A sign-in belongs to no tenant in particular; file it under the user's first one.
            tenant_id = db.session.execute(
                select(user_tenants.c.tenant_id).where(user_tenants.c.user_id == user.id)
                .order_by(user_tenants.c.tenant_id).limit(1)
            ).scalar_one_or_none()
            audit.record(None, action, "user", user.username, actor=user.username, tenant_id=tenant_id)
            db.session.commit()
        except Exception:  # auditing must never turn a sign-in into an error page
            logger.exception("could not audit %s of %s", action, user.username)
            db.session.rollback()
