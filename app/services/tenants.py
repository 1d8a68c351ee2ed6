"""Tenants and memberships."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Tenant, user_tenants
from app.security import Principal
from app.services import audit
from app.services.errors import Conflict, Invalid
from app.services.pagination import decode_cursor, encode_cursor
from app.services.validation import SLUG_RE, check_keys, check_name

logger = logging.getLogger(__name__)


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


def create_tenant(principal: Principal, body: dict[str, Any]) -> Tenant:
    """Create a tenant (Admins only; the API checks): 422 for a bad slug, 409 when it is taken."""
    check_keys(body, {"slug", "name"})
    slug = check_name(body.get("slug"), "slug", SLUG_RE)
    name = body.get("name", slug)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise Invalid("name must be a non-empty string of at most 200 characters", code="invalid_field",
                      details={"field": "name"})
    if db.session.execute(select(Tenant.id).where(Tenant.slug == slug)).first() is not None:
        raise Conflict(f"tenant {slug!r} exists", code="tenant_exists", details={"slug": slug})
    tenant = Tenant(slug=slug, name=name.strip())
    db.session.add(tenant)
    try:
        db.session.flush()
    except IntegrityError as exc:  # a concurrent create of the same slug
        db.session.rollback()
        raise Conflict(f"tenant {slug!r} exists", code="tenant_exists", details={"slug": slug}) from exc
    audit.record(principal, "tenant.create", "tenant", slug, {"name": tenant.name}, tenant_id=tenant.id)
    db.session.commit()
    logger.info("tenant %s created by %s", slug, principal.actor)
    return tenant


def list_tenants(limit: int, cursor: str | None) -> tuple[list[Tenant], str | None]:
    """Every tenant by slug, one page at a time (Admins only; the API checks)."""
    state = decode_cursor(cursor)
    query = select(Tenant).order_by(Tenant.slug).limit(limit + 1)
    if state:
        query = query.where(Tenant.slug > str(state.get("after", "")))
    rows = list(db.session.execute(query).scalars())
    nxt = encode_cursor({"after": rows[limit - 1].slug}) if len(rows) > limit else None
    return rows[:limit], nxt


def tenant_to_json(tenant: Tenant) -> dict[str, Any]:
    """The API's view of a tenant."""
    return {"id": tenant.id, "slug": tenant.slug, "name": tenant.name, "created_at": tenant.created_at}


SWITCH_MENU_LIMIT = 200  # an Admin of a large bus picks from the first ones; the API lists them all


def switchable_tenants(user: Any) -> list[str]:
    """Slugs a console user may act in: their tenants, or every tenant for an Admin."""
    from app.security import ROLE_ADMIN

    if any(r.name == ROLE_ADMIN for r in user.roles):
        return list(db.session.execute(
            select(Tenant.slug).order_by(Tenant.slug).limit(SWITCH_MENU_LIMIT)).scalars())
    return [t.slug for t in tenants_of_user(user.id)]
