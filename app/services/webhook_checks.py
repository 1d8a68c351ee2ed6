"""Field checks of webhook subscriptions and replays, mapping the delivery engine's errors to 422s."""
from __future__ import annotations

import logging
import math
from typing import Any

from flask import current_app

from app.bus.delivery.filters import FilterError, compile_filter, validate_event_types
from app.bus.delivery.retry import validate_schedule
from app.bus.delivery.ssrf import UnsafeUrl, check_url
from app.services.errors import Invalid

logger = logging.getLogger(__name__)

MAX_RATE_LIMIT_PER_S = 10_000
TIMEOUT_RANGE_S = (1, 60)


def check_webhook_url(value: Any, field: str = "url") -> str:
    """An http(s) URL that resolves to public addresses (any address when WEBHOOK_ALLOW_PRIVATE)."""
    allow_private = bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    try:
        check_url(value, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise Invalid(str(exc), code="unsafe_url", details={"field": field}) from exc
    return value


def check_filter(value: Any, field: str = "filter") -> str | None:
    """A CEL filter that compiles (None or blank: no filter); 422 ``invalid_filter`` with the parser's message."""
    try:
        compile_filter(value)
    except FilterError as exc:
        raise Invalid(str(exc), code="invalid_filter", details={"field": field}) from exc
    return value if isinstance(value, str) and value.strip() else None


def check_event_types(value: Any) -> list[str] | None:
    """Event-type globs (None: every type); an empty list is refused as it would match nothing useful."""
    try:
        globs = validate_event_types(value)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_field", details={"field": "event_types"}) from exc
    if globs == []:
        raise Invalid("event_types must hold at least one type or glob, or be null for every type",
                      code="invalid_field", details={"field": "event_types"})
    return globs


def check_retry_schedule(value: Any) -> list[float | int] | None:
    """Delays in seconds (None: the default schedule, kept as None so a later default change applies)."""
    if value is None:
        return None
    try:
        delays = validate_schedule(value)
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_retry_schedule", details={"field": "retry_schedule"}) from exc
    return [int(d) if d.is_integer() else d for d in delays]


def _number(value: Any, field: str, minimum: float, maximum: float, exclusive_min: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > minimum if exclusive_min else value >= minimum) and value <= maximum
    if not ok:
        low = f"above {minimum}" if exclusive_min else f"at least {minimum}"
        raise Invalid(f"{field} must be a number {low} and at most {maximum}, or null", code="invalid_field",
                      details={"field": field})
    return value


def check_rate_limit(value: Any) -> float | None:
    """Deliveries per second: > 0 and <= 10,000, or None (unlimited)."""
    return None if value is None else _number(value, "rate_limit_per_s", 0, MAX_RATE_LIMIT_PER_S, True)


def check_timeout(value: Any) -> float | None:
    """Seconds per attempt, 1..60, or None (WEBHOOK_TIMEOUT_S)."""
    return None if value is None else _number(value, "timeout_s", *TIMEOUT_RANGE_S, False)


def check_bool(value: Any, field: str) -> bool:
    """A JSON boolean (422 otherwise)."""
    if not isinstance(value, bool):
        raise Invalid(f"{field} must be true or false", code="invalid_field", details={"field": field})
    return value
