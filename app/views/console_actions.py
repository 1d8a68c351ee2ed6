"""Shared plumbing of the console views: the acting principal, actions with flashed outcomes, form fields.

Every page and action checks twice on the server: FAB's ``@has_access`` (Viewers hold can_list / can_show
only, so their POSTs are refused with 403 before any code runs) and then ``principal.require(PERMISSION)``,
the same rule the REST API applies. Hiding a button is only a courtesy on top.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NoReturn

import orjson
from flask import abort, flash, redirect, request
from werkzeug.wrappers import Response

from app.extensions import db
from app.security import MANAGE, PUBLISH, Principal
from app.services.errors import Invalid, ServiceError
from app.views.context import console_principal

logger = logging.getLogger(__name__)

PAGE_SIZE = 50


def refuse(exc: ServiceError) -> NoReturn:
    """Answer a page request that a use case refused with the matching HTTP error page."""
    abort(exc.status if exc.status in (400, 403, 404, 409, 422, 503) else 400, description=exc.message)


def acting(permission: str) -> Principal:
    """The console user's principal in the session's tenant, after checking it holds ``permission``."""
    try:
        principal = console_principal()
        principal.require(permission)
    except ServiceError as exc:
        refuse(exc)
    return principal


def capabilities(principal: Principal) -> dict[str, bool]:
    """What the templates may offer (hiding is cosmetic: every action checks again on the server)."""
    return {"can_manage": MANAGE in principal.permissions, "can_publish": PUBLISH in principal.permissions,
            "is_admin": principal.is_admin}


def describe(exc: ServiceError) -> str:
    """A refusal as one line for a flash message."""
    field = exc.details.get("field") or exc.details.get("param")
    return f"{exc.message} ({field})" if field and str(field) not in exc.message else exc.message


def act(permission: str, work: Callable[[Principal], str | None], back: str) -> Response:
    """Run a state-changing use case as the console user, flash its outcome, redirect (POST/redirect/GET)."""
    principal = acting(permission)
    try:
        message = work(principal)
    except ServiceError as exc:
        db.session.rollback()
        logger.info("console action by %s refused: %s", principal.actor, exc.message)
        flash(describe(exc), "danger")
        return redirect(back)
    if message:
        flash(message, "success")
    return redirect(back)


def text(name: str, source: Any = None) -> str | None:
    """A form (or query) field, stripped; blank is None."""
    value = (source if source is not None else request.form).get(name)
    value = value.strip() if isinstance(value, str) else None
    return value or None


def integer(name: str, source: Any = None) -> int | None:
    """An integer field (422 when it is not one); blank is None."""
    value = text(name, source)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Invalid(f"{name} must be an integer", code="invalid_field", details={"field": name}) from None


def number(name: str) -> float | None:
    """A number field (422 when it is not one); blank is None."""
    value = text(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise Invalid(f"{name} must be a number", code="invalid_field", details={"field": name}) from None


def words(name: str) -> list[str] | None:
    """A list typed as comma- or space-separated words; blank is None."""
    value = text(name)
    return None if value is None else [w for w in value.replace(",", " ").split() if w]


def numbers(name: str) -> list[float | int] | None:
    """A list of numbers typed comma-separated; blank is None."""
    items = words(name)
    if items is None:
        return None
    try:
        return [int(w) if w.isdigit() else float(w) for w in items]
    except ValueError:
        raise Invalid(f"{name} must be numbers separated by commas", code="invalid_field",
                      details={"field": name}) from None


def json_field(name: str) -> Any:
    """A JSON value typed in a textarea (422 with the parser's message when it is not JSON)."""
    value = text(name)
    if value is None:
        raise Invalid(f"{name} is required", code="invalid_field", details={"field": name})
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"{name} is not valid JSON: {exc}", code="invalid_field", details={"field": name}) from None


def checked(name: str) -> bool:
    """A checkbox."""
    return request.form.get(name) in ("on", "true", "1", "y")
