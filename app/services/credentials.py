"""Whether the credentials of long-lived connections still hold: revoked keys and removed users end them.

A WebSocket is authenticated once, when it connects; a key revoked or a user deactivated afterwards must
not go on reading. ``lapsed`` re-checks a set of connections' principals in a few queries; the socket
namespaces call it periodically (``app/sockets/watch.py``) and disconnect what it returns.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import ApiKey
from app.security import READ, Principal, principal_for_user
from app.services.errors import ServiceError

K = TypeVar("K", bound=Hashable)
DEFAULT_RECHECK_S = 15.0  # SOCKET_AUTH_RECHECK_S: how long a lapsed credential may keep a socket open
_CHUNK = 500  # key ids per IN (...): a process may hold thousands of sockets, databases limit parameters


def lapsed(principals: Mapping[K, Principal], permission: str = READ) -> set[K]:
    """The keys whose principal may no longer ``permission`` in its tenant.

    An API key lapses when it is revoked or deleted; a user (console session or JWT) when deleted, deactivated,
    or no longer holding ``permission`` in the tenant the connection acts in (role or membership removed).
    """
    key_ids = sorted({p.api_key_id for p in principals.values() if p.api_key_id is not None})
    live_keys: set[str] = set()
    for start in range(0, len(key_ids), _CHUNK):
        live_keys.update(db.session.execute(select(ApiKey.id).where(
            ApiKey.id.in_(key_ids[start:start + _CHUNK]), ApiKey.revoked_at.is_(None))).scalars())
    users: dict[tuple[int, str], bool] = {}
    out: set[K] = set()
    for conn, p in principals.items():
        if p.api_key_id is not None:
            if p.api_key_id not in live_keys:
                out.add(conn)
        elif p.user_id is not None:
            seat = (p.user_id, p.tenant_slug)
            if seat not in users:
                users[seat] = _user_may(p.user_id, p.tenant_slug, permission)
            if not users[seat]:
                out.add(conn)
    db.session.rollback()  # read-only: end the transaction rather than hold a snapshot between checks
    return out


def _user_may(user_id: int, tenant_slug: str, permission: str) -> bool:
    user = current_app.appbuilder.sm.get_user_by_id(user_id)
    if user is None or not user.is_active:
        return False
    try:
        principal_for_user(user, tenant_slug).require(permission)
    except ServiceError:
        return False
    return True
