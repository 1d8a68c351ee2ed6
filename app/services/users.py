"""User use cases for scripted set-up: create a console/API user with a role and tenants, list users.

Users live in Flask-AppBuilder's tables and are made through its security manager, so the console's
own user management and the login endpoint see exactly what this creates.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import Tenant, user_tenants
from app.security import ROLE_ADMIN, ROLES, Principal
from app.services import audit
from app.services.errors import BadRequest, Conflict, Invalid
from app.services.pagination import decode_cursor, encode_cursor
from app.services.tenants import add_member
from app.services.validation import check_keys, check_optional_str

logger = logging.getLogger(__name__)

CREATE_FIELDS = {"username", "password", "role", "tenants", "email", "first_name", "last_name"}
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
# The handful of passwords every guessing list starts with; length alone does not stop them.
COMMON_PASSWORDS = frozenset({"password", "password1", "12345678", "123456789", "1234567890", "qwertyui",
                              "qwerty123", "iloveyou", "11111111", "00000000", "abcdefgh", "letmein1",
                              "admin123", "changeme", "welcome1"})


def _check_password(password: Any, username: str) -> str:
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        raise Invalid("password must be a string", code="invalid_field", details={"field": "password"})
    weak = (len(password) < MIN_PASSWORD or password.lower() in COMMON_PASSWORDS
            or password.lower() == username.lower() or len(set(password)) < 3)
    if weak:
        raise Invalid(f"password too weak: at least {MIN_PASSWORD} characters, not a common password, "
                      "not the username", code="weak_password", details={"field": "password"})
    return password


def _check_tenants(value: Any, role: str) -> list[Tenant]:
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise Invalid("tenants must be a list of tenant slugs", code="invalid_field", details={"field": "tenants"})
    slugs = sorted(set(value))
    if not slugs and role != ROLE_ADMIN:
        # Only Admins act without a membership; any other user with no tenant could do nothing.
        raise Invalid("a non-Admin user needs at least one tenant", code="tenants_required",
                      details={"field": "tenants"})
    tenants = list(db.session.execute(select(Tenant).where(Tenant.slug.in_(slugs))).scalars()) if slugs else []
    unknown = sorted(set(slugs) - {t.slug for t in tenants})
    if unknown:
        raise Invalid(f"unknown tenant(s): {', '.join(unknown)}", code="unknown_tenant",
                      details={"field": "tenants", "tenants": unknown})
    return tenants


def create_user(principal: Principal, body: dict[str, Any]) -> Any:
    """Create a user with one role in the given tenants (Admins only; the API checks)."""
    check_keys(body, CREATE_FIELDS)
    username = body.get("username")
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise Invalid(f"username must match {USERNAME_RE.pattern}", code="invalid_field",
                      details={"field": "username"})
    password = _check_password(body.get("password"), username)
    role_name = body.get("role")
    if role_name not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", code="unknown_role",
                      details={"field": "role", "allowed": list(ROLES)})
    tenants = _check_tenants(body.get("tenants"), role_name)
    email = check_optional_str(body.get("email"), "email", 320) or (
        username if "@" in username else f"{username}@localhost")
    first_name = check_optional_str(body.get("first_name"), "first_name", 64) or username[:64]
    last_name = check_optional_str(body.get("last_name"), "last_name", 64) or ""

    sm = current_app.appbuilder.sm
    if sm.find_user(username=username) is not None:
        raise Conflict(f"user {username!r} exists", code="user_exists", details={"username": username})
    if sm.find_user(email=email) is not None:
        raise Conflict(f"a user with email {email!r} exists", code="email_exists", details={"email": email})
    role = sm.find_role(role_name)
    if role is None:  # roles are made by `flask bus init`; a bus that skipped it has none
        raise Invalid(f"role {role_name!r} is not set up: run `flask bus init`", code="unknown_role",
                      details={"field": "role"})
    # commit=False: the user, its memberships and the audit record land in one transaction.
    user = sm.add_user(username, first_name, last_name, email, role, password=password, commit=False)
    if not user:  # FAB logged the cause and rolled back; a concurrent create is the likely one
        raise Conflict(f"could not create user {username!r}", code="user_exists", details={"username": username})
    for tenant in tenants:
        add_member(user.id, tenant.id)
    audit.record(principal, "user.create", "user", username,
                 {"role": role_name, "tenants": [t.slug for t in tenants]})
    db.session.commit()
    logger.info("user %s (%s) created by %s", username, role_name, principal.actor)
    return user


def list_users(limit: int, cursor: str | None) -> tuple[list[Any], str | None]:
    """Every user by id, one page at a time (Admins only; the API checks)."""
    user_model = current_app.appbuilder.sm.user_model
    state = decode_cursor(cursor)
    query = select(user_model).order_by(user_model.id).limit(limit + 1)
    if state:
        after = state.get("after")
        if isinstance(after, bool) or not isinstance(after, int):
            raise BadRequest("invalid cursor", code="invalid_cursor")
        query = query.where(user_model.id > after)
    rows = list(db.session.execute(query).scalars())
    nxt = encode_cursor({"after": rows[limit - 1].id}) if len(rows) > limit else None
    return rows[:limit], nxt


def tenant_slugs_by_user(user_ids: list[int]) -> dict[int, list[str]]:
    """The tenant slugs of each user, in one query."""
    out: dict[int, list[str]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return out
    rows = db.session.execute(
        select(user_tenants.c.user_id, Tenant.slug).join(Tenant, Tenant.id == user_tenants.c.tenant_id)
        .where(user_tenants.c.user_id.in_(user_ids)).order_by(Tenant.slug)
    )
    for user_id, slug in rows:
        out[user_id].append(slug)
    return out


def user_to_json(user: Any, tenants: list[str]) -> dict[str, Any]:
    """The API's view of a user: never the password (not even its hash)."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "active": bool(user.active),
        "roles": sorted(r.name for r in user.roles),
        "tenants": tenants,
        "created_on": user.created_on,
        "last_login": user.last_login,
    }
