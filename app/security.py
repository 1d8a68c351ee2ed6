"""Who is calling and what they may do: roles, API keys, tenant scoping.

Every API request resolves to a ``Principal`` acting in exactly one tenant. Every query of a
tenant's data filters on ``principal.tenant_id``; that is the whole of tenant isolation.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any, TypeVar

from flask import g, request
from flask_jwt_extended import decode_token
from jwt import PyJWTError
from sqlalchemy import select, update

from app.extensions import db
from app.models import ApiKey, Tenant, user_tenants
from app.models.base import utcnow
from app.services.errors import Forbidden, NotFound, Unauthorized

logger = logging.getLogger(__name__)

API_KEY_PREFIX = "ebk_"
LAST_USED_RESOLUTION = timedelta(seconds=60)
ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER = "Admin", "Operator", "Viewer"
ROLES = (ROLE_ADMIN, ROLE_OPERATOR, ROLE_VIEWER)

# Permissions the API checks. Scopes of API keys and roles of users both map onto them.
READ, PUBLISH, CONSUME, MANAGE, ADMIN = "read", "publish", "consume", "manage", "admin"
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    ROLE_ADMIN: frozenset({READ, PUBLISH, CONSUME, MANAGE, ADMIN}),
    ROLE_OPERATOR: frozenset({READ, PUBLISH, CONSUME, MANAGE}),
    ROLE_VIEWER: frozenset({READ}),
}
SCOPES = ("publish", "consume", "manage")
SCOPE_PERMISSIONS: dict[str, frozenset[str]] = {
    "publish": frozenset({READ, PUBLISH}),
    "consume": frozenset({READ, CONSUME}),
    "manage": frozenset({READ, MANAGE}),
}


@dataclass(frozen=True)
class Principal:
    """The caller: an actor acting in one tenant with a set of permissions."""

    tenant_id: int
    tenant_slug: str
    actor: str
    permissions: frozenset[str]
    user_id: int | None = None
    api_key_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        """Admins manage tenants and users across the whole bus."""
        return ADMIN in self.permissions

    def require(self, permission: str) -> None:
        """Raise Forbidden unless the principal holds ``permission``."""
        if permission not in self.permissions:
            raise Forbidden(f"this credential may not {permission}", code="forbidden",
                            details={"required": permission})


def hash_api_key(key: str) -> str:
    """SHA-256 of a key: the key carries 256 random bits, so a fast hash is safe and O(1) to look up."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    """A new secret API key ``ebk_...`` (shown once)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


# Resolved keys, briefly: a database round trip per request was a quarter of a single publish's CPU.
# A revocation takes effect at once in the revoking process and within API_KEY_CACHE_TTL_S elsewhere.
API_KEY_CACHE_TTL_S = 5.0
_key_cache: dict[str, tuple[float, Principal]] = {}
_key_cache_lock = threading.Lock()


def forget_api_key(key_hash: str) -> None:
    """Drop a key from this process's cache (on revocation)."""
    with _key_cache_lock:
        _key_cache.pop(key_hash, None)


def principal_from_api_key(key: str) -> Principal:
    """The principal of an API key (cached briefly); 401 for an unknown or revoked key."""
    key_hash = hash_api_key(key)
    now = time.monotonic()
    cached = _key_cache.get(key_hash)
    if cached is not None and cached[0] > now:
        return cached[1]
    row = db.session.execute(
        select(ApiKey, Tenant.slug).join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == key_hash)
    ).first()
    if row is None or row[0].revoked_at is not None:
        forget_api_key(key_hash)
        raise Unauthorized("unknown or revoked API key", code="invalid_credentials")
    api_key, slug = row
    _touch(api_key)
    perms: set[str] = set()
    for scope in api_key.scope_list:
        perms |= SCOPE_PERMISSIONS.get(scope, frozenset())
    principal = Principal(tenant_id=api_key.tenant_id, tenant_slug=slug, actor=f"apikey:{api_key.id}",
                          permissions=frozenset(perms), api_key_id=api_key.id)
    with _key_cache_lock:
        if len(_key_cache) > 10_000:  # bounded: many distinct keys just cost a query each
            _key_cache.clear()
        _key_cache[key_hash] = (now + API_KEY_CACHE_TTL_S, principal)
    return principal


def _touch(api_key: ApiKey) -> None:
    # At most one write a minute per key: operators see "last used" without a write per request.
    now = utcnow()
    last = api_key.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)  # SQLite returns naive UTC
    if last is None or now - last > LAST_USED_RESOLUTION:
        db.session.execute(update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now))
        db.session.commit()


def principal_for_user(user: Any, tenant_slug: str | None) -> Principal:
    """A console or JWT user acting in their tenant, or the one ``tenant_slug`` names (X-Tenant)."""
    role_names = {r.name for r in user.roles}
    perms: set[str] = set()
    for name in role_names:
        perms |= ROLE_PERMISSIONS.get(name, frozenset())
    if not perms:
        raise Forbidden("this user has no bus role", code="forbidden")
    is_admin = ADMIN in perms
    member_q = select(Tenant).join(user_tenants, user_tenants.c.tenant_id == Tenant.id).where(
        user_tenants.c.user_id == user.id).order_by(Tenant.id)
    if tenant_slug:
        query = select(Tenant).where(Tenant.slug == tenant_slug) if is_admin else member_q.where(
            Tenant.slug == tenant_slug)
        tenant = db.session.execute(query).scalar_one_or_none()
        if tenant is None:
            raise NotFound(f"no tenant {tenant_slug!r}", code="tenant_not_found")
    else:
        tenants = db.session.execute(member_q.limit(2)).scalars().all()
        if not tenants and is_admin:
            tenants = db.session.execute(select(Tenant).order_by(Tenant.id).limit(1)).scalars().all()
        if not tenants:
            raise Forbidden("this user belongs to no tenant", code="no_tenant")
        if len(tenants) > 1:
            raise BadRequestTenant()
        tenant = tenants[0]
    return Principal(tenant_id=tenant.id, tenant_slug=tenant.slug, actor=user.username,
                     permissions=frozenset(perms), user_id=user.id)


class BadRequestTenant(Forbidden):
    """A user of several tenants must say which one with X-Tenant."""

    status, code = 400, "tenant_required"

    def __init__(self) -> None:
        super().__init__("this user belongs to several tenants: name one in the X-Tenant header")


def _principal_from_jwt(token: str) -> Principal:
    from flask import current_app

    try:
        claims = decode_token(token)
    except (PyJWTError, Exception) as exc:  # flask_jwt_extended raises several families
        raise Unauthorized("invalid or expired token", code="invalid_credentials") from exc
    if claims.get("type") != "access":
        raise Unauthorized("an access token is required", code="invalid_credentials")
    sm = current_app.appbuilder.sm
    user = sm.get_user_by_id(int(claims["sub"]))
    if user is None or not user.is_active:
        raise Unauthorized("unknown or inactive user", code="invalid_credentials")
    return principal_for_user(user, request.headers.get("X-Tenant"))


def resolve_principal() -> Principal:
    """The principal of the current request from Bearer (JWT or API key) or Basic (API key) auth."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "bearer" and value:
        if value.startswith(API_KEY_PREFIX):
            return principal_from_api_key(value)
        return _principal_from_jwt(value)
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic credentials", code="invalid_credentials") from exc
        _, _, password = decoded.partition(":")
        if password.startswith(API_KEY_PREFIX):
            return principal_from_api_key(password)
        raise Unauthorized("Basic auth takes an API key as the password", code="invalid_credentials")
    raise Unauthorized("credentials required: Authorization: Bearer <token or API key>",
                       code="unauthorized")


F = TypeVar("F", bound=Callable[..., Any])


def require(permission: str) -> Callable[[F], F]:
    """Decorator for API endpoints: resolve the caller into ``g.principal`` and check ``permission``."""

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = resolve_principal()
            principal.require(permission)
            g.principal = principal
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def current_principal() -> Principal:
    """The principal resolved for this request by ``require``."""
    return g.principal

