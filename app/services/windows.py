"""Time windows (RFC 3339 fields) and newest-first keyset pages shared by the webhook use cases."""
from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_

from app.bus.envelope import EnvelopeError, parse_rfc3339
from app.services.errors import BadRequest, Invalid
from app.services.pagination import decode_cursor, encode_cursor

logger = logging.getLogger(__name__)

_PLUS_AS_SPACE_RE = re.compile(r" (\d{2}:\d{2})$")


def as_utc(value: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(value: Any, field: str, param: bool = False) -> datetime | None:
    """An RFC 3339 time with an offset, as UTC; None stays None. 422 for a body field, 400 for a query."""
    if value is None or value == "":
        return None
    if param and isinstance(value, str):
        # An unencoded "+" in a query string arrives as a space: "...T10:00:00 02:00" meant "+02:00".
        value = _PLUS_AS_SPACE_RE.sub(r"+\1", value)
    try:
        return as_utc(parse_rfc3339(value))
    except (EnvelopeError, ValueError, OverflowError) as exc:
        message = f"{field} must be an RFC 3339 time with an offset, like 2024-05-01T12:00:00Z"
        if param:
            raise BadRequest(message, code="invalid_parameter", details={"param": field}) from exc
        raise Invalid(message, code="invalid_field", details={"field": field}) from exc


def check_window(since: datetime | None, until: datetime | None) -> None:
    """since must come before until (422)."""
    if since is not None and until is not None and since >= until:
        raise Invalid("since must be before until", code="invalid_window",
                      details={"since": since.isoformat(), "until": until.isoformat()})


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC for a selector (JSON column)."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def newest_first(query: Any, at_col: Any, id_col: Any, cursor: str | None) -> Any:
    """Order newest first by (time, id) and continue after the cursor's position."""
    state = decode_cursor(cursor)
    if state:
        try:
            at = as_utc(datetime.fromisoformat(str(state["at"])))
            after_id = str(state["id"])
        except (KeyError, ValueError) as exc:
            raise BadRequest("invalid cursor", code="invalid_cursor") from exc
        query = query.where(or_(at_col < at, and_(at_col == at, id_col < after_id)))
    return query.order_by(at_col.desc(), id_col.desc())


def page(rows: list[Any], limit: int, at_of: Any) -> tuple[list[Any], str | None]:
    """The first ``limit`` rows and the cursor after them (None on the last page)."""
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor({"at": as_utc(at_of(last)).isoformat(), "id": last.id})
