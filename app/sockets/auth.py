"""Who opened a Socket.IO connection: the console session's user, or a token (JWT or API key) in ``auth``."""
from __future__ import annotations

import logging
from typing import Any

from flask import current_app, session
from flask_jwt_extended import decode_token
from flask_login import current_user
from flask_socketio import ConnectionRefusedError

from app.security import API_KEY_PREFIX, READ, Principal, principal_for_user, principal_from_api_key
from app.services.errors import ServiceError, Unauthorized
from app.views.context import TENANT_SESSION_KEY

logger = logging.getLogger(__name__)


def _from_jwt(token: str, tenant: str | None) -> Principal:
    try:
        claims = decode_token(token)
    except Exception as exc:  # noqa: BLE001 - flask_jwt_extended raises several families
        raise Unauthorized("invalid or expired token", code="invalid_credentials") from exc
    if claims.get("type") != "access":
        raise Unauthorized("an access token is required", code="invalid_credentials")
    user = current_app.appbuilder.sm.get_user_by_id(int(claims["sub"]))
    if user is None or not user.is_active:
        raise Unauthorized("unknown or inactive user", code="invalid_credentials")
    return principal_for_user(user, tenant)


def socket_principal(auth: Any) -> Principal:
    """The principal of a connection: ``auth = {"token", "tenant"?}``, else the logged-in console user."""
    auth = auth if isinstance(auth, dict) else {}
    token, tenant = auth.get("token"), auth.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        tenant = None
    if isinstance(token, str) and token:
        if token.startswith(API_KEY_PREFIX):
            return principal_from_api_key(token)  # a key acts in its own tenant
        return _from_jwt(token, tenant)
    if current_user.is_authenticated:
        # The same rule as the console pages: the tenant chosen with the switcher, or the user's only one.
        return principal_for_user(current_user, tenant or session.get(TENANT_SESSION_KEY))
    raise Unauthorized("log in to the console or pass {token} in auth", code="unauthorized")


def reader_or_refuse(auth: Any) -> Principal:
    """The principal of a connection that may read its tenant's data; else refuse it with the error's code."""
    try:
        principal = socket_principal(auth)
        principal.require(READ)
    except ServiceError as exc:
        raise ConnectionRefusedError(exc.code, {"message": exc.message}) from exc
    return principal
