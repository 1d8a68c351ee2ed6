"""Tenants and memberships."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Tenant, user_tenants


def ensure_tenant(slug: str, name: str | None = None) -> Tenant:
    """The tenant ``slug``, created if missing (no commit)."""
    tenant = db.session.execute(select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()
    if tenant is None:
        tenant = Tenant(slug=slug, name=name or slug)
        db.session.add(tenant)
        db.session.flush()
    return tenant


def add_member(user_id: int, tenant_id: int) -> None:
    """Make a user a member of a tenant (idempotent, no commit)."""
    exists = db.session.execute(
        select(user_tenants.c.user_id).where(user_tenants.c.user_id == user_id,
                                             user_tenants.c.tenant_id == tenant_id)
    ).first()
    if exists is None:
        db.session.execute(user_tenants.insert().values(user_id=user_id, tenant_id=tenant_id))


def tenants_of_user(user_id: int) -> list[Tenant]:
    """The tenants a user belongs to, oldest first."""
    return list(db.session.execute(
        select(Tenant).join(user_tenants, user_tenants.c.tenant_id == Tenant.id)
        .where(user_tenants.c.user_id == user_id).order_by(Tenant.id)
    ).scalars())
