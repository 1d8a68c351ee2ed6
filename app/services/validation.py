"""Field checks shared by the use cases (names, counts, durations)."""
from __future__ import annotations

import re
from typing import Any

from app.services.errors import Invalid

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # no dots: "<tenant>.<stream>" must stay unambiguous


def check_name(value: Any, field: str = "name", pattern: re.Pattern[str] = NAME_RE) -> str:
    """A resource name matching ``pattern`` (422 otherwise)."""
    if not isinstance(value, str) or not pattern.match(value):
        raise Invalid(f"{field} must match {pattern.pattern}", code="invalid_field", details={"field": field})
    return value


def check_int(value: Any, field: str, minimum: int, maximum: int) -> int:
    """An integer within bounds (422 otherwise; booleans are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise Invalid(f"{field} must be an integer between {minimum} and {maximum}", code="invalid_field",
                      details={"field": field})
    return value


def check_optional_str(value: Any, field: str, max_length: int) -> str | None:
    """None or a string of at most ``max_length`` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise Invalid(f"{field} must be a string of at most {max_length} characters", code="invalid_field",
                      details={"field": field})
    return value


def check_keys(body: dict[str, Any], allowed: set[str]) -> None:
    """Refuse unknown fields, so a typo is an error rather than silently ignored."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(unknown)}", code="unknown_field", details={"fields": unknown})
