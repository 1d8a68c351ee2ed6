"""The Confluent Schema Registry REST API under ``/registry`` (docs/registry.md)."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from app.registry_api.http import error_response, http_error, service_error
from app.services import registry_errors as errors
from app.services.errors import ServiceError

logger = logging.getLogger(__name__)

PREFIX = "/registry"
bp = Blueprint("registry", __name__, url_prefix=PREFIX)


@bp.errorhandler(ServiceError)
def _service_error(exc: ServiceError) -> Response:
    return service_error(exc)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return http_error(exc)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    # why: Confluent clients read error_code from every error body; a bare HTML 500 would confuse them
    logger.exception("registry request %s %s failed", request.method, request.path)
    return error_response(errors.STORE_ERROR, "internal error", 500)


def register_registry_api() -> None:
    """Mount the registry blueprint on the current app; errors under /registry that no route handles get
    Confluent's shape too."""
    from app.extensions import csrf
    from app.registry_api import schemas, settings, subjects  # noqa: F401  (attach the routes to bp)

    app = current_app
    csrf.exempt(bp)  # credentials come in headers, never from a cookie
    app.register_blueprint(bp)
    # why wrap the app-wide handler: unknown routes and wrong methods never reach a blueprint's handlers
    handlers = app.error_handler_spec[None][None]
    previous = handlers.get(HTTPException)

    def _app_http_error(exc: HTTPException) -> Any:
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            return http_error(exc)
        return previous(exc) if previous is not None else exc

    app.register_error_handler(HTTPException, _app_http_error)
