"""Request parsing and JSON responses shared by every endpoint, with API.md's error shape."""
from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from app.services.errors import BadRequest, ServiceError, UnsupportedMediaType

JSON_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise with orjson (fast, RFC 3339 datetimes)."""
    # Naive datetimes are UTC (SQLite drops the zone): say so, RFC 3339 needs an offset.
    option = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
    resp = Response(orjson.dumps(body, option=option), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def no_content() -> Response:
    """204."""
    return Response(status=204)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """API.md's error body."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def parse_json(required: bool = True) -> Any:
    """The request body as JSON: 415 for another content type, 400 for malformed or non-UTF-8 JSON."""
    raw = request.get_data(cache=True)
    if not raw:
        if required:
            raise BadRequest("a JSON body is required", code="body_required")
        return None
    mimetype = (request.mimetype or "").lower()
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise UnsupportedMediaType("send Content-Type: application/json", code="unsupported_media_type",
                                   details={"content_type": request.content_type})
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", code="malformed_json") from exc


def parse_object(required: bool = True) -> dict[str, Any]:
    """The body as a JSON object (400 otherwise); an absent optional body is ``{}``."""
    body = parse_json(required=required)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="malformed_json")
    return body


def register_error_handlers(app: Flask) -> None:
    """Map service errors and HTTP errors under /api to API.md's error body; never a 500 for bad input."""

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> Response:
        headers = {"Retry-After": str(exc.details["retry_after"])} if "retry_after" in exc.details else None
        return json_response(error_body(exc.code, exc.message, exc.details), exc.status, headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if not request.path.startswith(("/api/", "/health", "/ready")):
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        resp = json_response(error_body(code, exc.description or exc.name), exc.code or 500)
        allow = dict(exc.get_headers()).get("Allow")
        if allow:
            resp.headers["Allow"] = allow  # a 405 names the methods that would work
        return resp
