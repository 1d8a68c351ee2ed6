"""Errors a use case raises; the API maps each to API.md's error body and status."""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal with a machine-readable code, an HTTP-like status and details."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, details: dict[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.details = details or {}


class BadRequest(ServiceError):
    """Malformed input (400)."""

    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    """No or bad credentials (401)."""

    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    """Authenticated but not allowed (403)."""

    status, code = 403, "forbidden"


class NotFound(ServiceError):
    """Unknown, or another tenant's (404: no existence leak)."""

    status, code = 404, "not_found"


class Conflict(ServiceError):
    """Conflicts with the current state (409)."""

    status, code = 409, "conflict"


class TooLarge(ServiceError):
    """Body or batch too large (413)."""

    status, code = 413, "too_large"


class UnsupportedMediaType(ServiceError):
    """Wrong content type (415)."""

    status, code = 415, "unsupported_media_type"


class Invalid(ServiceError):
    """Well-formed but invalid (422)."""

    status, code = 422, "invalid"


class Unavailable(ServiceError):
    """A backend is not reachable (503)."""

    status, code = 503, "unavailable"
