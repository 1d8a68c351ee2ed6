"""API key use cases: create (the key shown once, stored hashed), list, show, revoke."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from app.extensions import db
from app.models import ApiKey, Tenant
from app.models.base import utcnow
from app.security import SCOPE_PERMISSIONS, SCOPES, Principal, forget_api_key, generate_api_key, hash_api_key
from app.services import audit
from app.services.errors import BadRequest, Forbidden, Invalid, NotFound
from app.services.pagination import decode_cursor, encode_cursor
from app.services.validation import check_keys

logger = logging.getLogger(__name__)

CREATE_FIELDS = {"name", "scopes", "tenant"}
PREFIX_LENGTH = 12  # "ebk_" + 8 random characters: enough to recognise a key in a list, useless to guess it


def _check_key_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise Invalid("name must be a non-empty string of at most 200 characters", code="invalid_field",
                      details={"field": "name"})
    return value.strip()


def _check_scopes(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise Invalid(f"scopes must be a non-empty list of {', '.join(SCOPES)}", code="invalid_field",
                      details={"field": "scopes"})
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise Invalid(f"unknown scope(s): {', '.join(unknown)}", code="invalid_scope",
                      details={"field": "scopes", "scopes": unknown, "allowed": list(SCOPES)})
    return sorted(set(value))


def _target_tenant(principal: Principal, slug: Any) -> tuple[int, str]:
    """The tenant the new key acts in: the caller's, or (Admins only) the one ``slug`` names."""
    if slug is None or slug == principal.tenant_slug:
        return principal.tenant_id, principal.tenant_slug
    if not isinstance(slug, str):
        raise Invalid("tenant must be a tenant slug", code="invalid_field", details={"field": "tenant"})
    # A non-Admin naming any other tenant gets the same 404 as an unknown one: no existence leak.
    tenant = None
    if principal.is_admin:
        tenant = db.session.execute(select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}", code="tenant_not_found", details={"tenant": slug})
    return tenant.id, tenant.slug


def create_api_key(principal: Principal, body: dict[str, Any]) -> tuple[ApiKey, str, str]:
    """Create a key; returns the row, its tenant slug and the plaintext key (never stored)."""
    check_keys(body, CREATE_FIELDS)
    name = _check_key_name(body.get("name"))
    scopes = _check_scopes(body.get("scopes"))
    # No escalation: a credential may only hand out permissions it holds itself (a manage-only key
    # must not mint a publish key).
    missing = sorted(s for s in scopes if not SCOPE_PERMISSIONS[s] <= principal.permissions)
    if missing:
        raise Forbidden("a key cannot be given scopes its creator does not hold", code="scope_not_held",
                        details={"scopes": missing})
    tenant_id, tenant_slug = _target_tenant(principal, body.get("tenant"))
    key = generate_api_key()
    row = ApiKey(tenant_id=tenant_id, name=name, prefix=key[:PREFIX_LENGTH], key_hash=hash_api_key(key),
                 scopes=" ".join(scopes), created_by=principal.user_id)
    db.session.add(row)
    db.session.flush()
    audit.record(principal, "api_key.create", "api_key", row.id, {"name": name, "scopes": scopes},
                 tenant_id=tenant_id)
    db.session.commit()
    logger.info("api key %s (%s) created in tenant %s by %s", row.id, row.prefix, tenant_slug, principal.actor)
    return row, tenant_slug, key


def get_api_key(principal: Principal, key_id: str) -> ApiKey:
    """The tenant's key ``key_id``; 404 when absent or another tenant's."""
    row = db.session.execute(
        select(ApiKey).where(ApiKey.tenant_id == principal.tenant_id, ApiKey.id == key_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no API key {key_id!r}", code="api_key_not_found", details={"id": key_id})
    return row


def list_api_keys(principal: Principal, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
    """The tenant's keys (revoked ones too, marked), oldest first, one page at a time."""
    query = (select(ApiKey).where(ApiKey.tenant_id == principal.tenant_id)
             .order_by(ApiKey.created_at, ApiKey.id).limit(limit + 1))
    state = decode_cursor(cursor)
    if state:
        try:
            after_at = datetime.fromisoformat(str(state["at"]))
            after_id = str(state["id"])
        except (KeyError, ValueError) as exc:
            raise BadRequest("invalid cursor", code="invalid_cursor") from exc
        query = query.where(or_(ApiKey.created_at > after_at,
                                and_(ApiKey.created_at == after_at, ApiKey.id > after_id)))
    rows = list(db.session.execute(query).scalars())
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor({"at": last.created_at.isoformat(), "id": last.id})
    return rows[:limit], nxt


def revoke_api_key(principal: Principal, key_id: str) -> None:
    """Revoke a key: it answers 401 from now on (revoking twice is a no-op)."""
    row = get_api_key(principal, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(principal, "api_key.revoke", "api_key", row.id, {"name": row.name})
        db.session.commit()
        forget_api_key(row.key_hash)
        logger.info("api key %s revoked by %s", row.id, principal.actor)


def api_key_to_json(row: ApiKey, tenant_slug: str, key: str | None = None) -> dict[str, Any]:
    """The API's view of a key; the plaintext ``key`` only in the answer to its creation."""
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "scopes": row.scope_list,
        "tenant": tenant_slug,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }
    if key is not None:
        out["key"] = key
    return out
