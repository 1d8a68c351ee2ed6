"""Opaque list cursors (``{"items": [...], "next": cursor}``)."""
from __future__ import annotations

import base64
from typing import Any

import orjson

from app.services.errors import BadRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode_cursor(state: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor for ``state``."""
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The state inside a cursor; 400 for one we did not make."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        state = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise BadRequest("invalid cursor", code="invalid_cursor") from exc
    if not isinstance(state, dict):
        raise BadRequest("invalid cursor", code="invalid_cursor")
    return state


def parse_limit(value: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """A ``limit`` query parameter: 1..maximum (400 otherwise)."""
    if value in (None, ""):
        return default
    try:
        limit = int(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadRequest("limit must be an integer", code="invalid_parameter", details={"param": "limit"}) from exc
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}", code="invalid_parameter",
                         details={"param": "limit"})
    return limit
