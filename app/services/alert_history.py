"""Alert instances of a tenant: the open ones and the history, newest first (``GET /api/v1/alerts``)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.extensions import db
from app.models.alert import FIRING, PENDING, RESOLVED, Alert
from app.security import Principal
from app.services.alert_notify import alert_to_json
from app.services.errors import BadRequest
from app.services.windows import newest_first, page

STATES = (PENDING, FIRING, RESOLVED)


def list_alerts(principal: Principal, limit: int, cursor: str | None, state: str | None = None,
                rule_id: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant's alerts (of one state, of one rule), most recent episode first, each with its rule's name."""
    query = select(Alert).options(joinedload(Alert.rule)).where(Alert.tenant_id == principal.tenant_id)
    if state:
        if state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}", code="invalid_parameter",
                             details={"param": "state"})
        query = query.where(Alert.state == state)
    if rule_id:
        query = query.where(Alert.rule_id == rule_id)
    query = newest_first(query, Alert.since, Alert.id, cursor)
    rows, nxt = page(list(db.session.execute(query.limit(limit + 1)).scalars()), limit, lambda a: a.since)
    return [alert_to_json(alert, alert.rule) for alert in rows], nxt
