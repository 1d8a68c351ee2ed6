"""Confluent's HTTP conventions: content types, error bodies ``{"error_code", "message"}``, auth, query flags."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from flask import Response, g, request
from werkzeug.exceptions import HTTPException

from app.security import Principal, resolve_principal
from app.services import registry_errors as errors
from app.services.errors import Forbidden, ServiceError

logger = logging.getLogger(__name__)

V1_JSON = "application/vnd.schemaregistry.v1+json"
RESPONSE_TYPES = (V1_JSON, "application/vnd.schemaregistry+json", "application/json")
# Confluent accepts these request bodies (octet-stream: some clients send nothing better).
REQUEST_TYPES = frozenset({*RESPONSE_TYPES, "application/octet-stream"})
# A service error's HTTP status → Confluent's error_code when the error is not a registry one.
_GENERIC_CODES = {401: errors.UNAUTHORIZED, 403: errors.FORBIDDEN}


def negotiated_type() -> str:
    """The response type the client prefers among Confluent's (v1+json when it does not say)."""
    accept = request.accept_mimetypes
    if not accept or accept.best in ("*/*", ""):
        return V1_JSON
    return accept.best_match(RESPONSE_TYPES, default=V1_JSON) or V1_JSON


def respond(body: Any, status: int = 200) -> Response:
    """A JSON response in the negotiated Confluent content type."""
    return Response(orjson.dumps(body), status=status, content_type=negotiated_type())


def error_response(error_code: int, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """Confluent's error body."""
    resp = respond({"error_code": error_code, "message": message}, status)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def service_error(exc: ServiceError) -> Response:
    """Any refusal of a use case (or of auth) in Confluent's shape."""
    code = getattr(exc, "error_code", None) or _GENERIC_CODES.get(exc.status, exc.status)
    headers = {"WWW-Authenticate": 'Basic realm="registry"'} if exc.status == 401 else None
    return error_response(code, exc.message, exc.status, headers)


def http_error(exc: HTTPException) -> Response:
    """Routing and protocol errors (404 unknown route, 405, 413, 415, 400) in Confluent's shape."""
    status = exc.code or 500
    resp = error_response(status, exc.description or exc.name, status)
    allow = dict(exc.get_headers()).get("Allow")
    if allow:
        resp.headers["Allow"] = allow
    return resp


def body() -> dict[str, Any]:
    """The request body as a JSON object (415 for a foreign content type, 400 for malformed JSON).

    Unknown fields are ignored, as Confluent does for clients newer than the server.
    """
    raw = request.get_data(cache=True)
    mimetype = (request.mimetype or "").lower()
    if mimetype and mimetype not in REQUEST_TYPES:
        raise errors.RegistryError(415, f"unsupported content type {mimetype}: send {V1_JSON}", status=415)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.RegistryError(400, f"malformed JSON: {exc}", status=400) from None
    if not isinstance(value, dict):
        raise errors.RegistryError(400, "the body must be a JSON object", status=400)
    return value


def flag(name: str, default: bool = False) -> bool:
    """A boolean query parameter: ``true`` in any case is true (the Python client sends ``True``/``False``)."""
    value = request.args.get(name)
    return default if value in (None, "") else value.strip().lower() == "true"


def int_arg(name: str, default: int) -> int:
    """An integer query parameter (400 when it is not one)."""
    value = request.args.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise errors.RegistryError(400, f"{name} must be an integer", status=400) from None


F = TypeVar("F", bound=Callable[..., Any])


def authorized(*permissions: str) -> Callable[[F], F]:
    """Resolve the caller (Bearer token, API key, or Basic with an API key) and require any of ``permissions``."""

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = resolve_principal()
            if not any(p in principal.permissions for p in permissions):
                raise Forbidden(f"this credential may not {' or '.join(permissions)} in the registry")
            g.principal = principal
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def principal() -> Principal:
    """The caller resolved by ``authorized``."""
    return g.principal
