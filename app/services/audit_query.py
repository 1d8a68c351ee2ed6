"""Reading the audit log: the current tenant's records, filtered, newest first, one keyset page at a time.

Scope: every user, Admins included, sees the records of the tenant they act in (Admins switch tenants to see
another one's). Admins also see the bus-wide records that belong to no tenant (``tenant_id`` NULL: sign-ins
of users without a tenant, system actions with no tenant to file them under), because only Admins run the
bus as a whole. Records of other tenants are never listed.

Filters: ``actor`` (the user name or ``apikey:<id>``, exact), ``action`` (exact, or a prefix ending in ``*``
such as ``stream.*``), ``target`` (the target's name or id, exact), ``target_type`` (exact), ``since`` and
``until`` (RFC 3339). Pages are ordered by (time, id), newest first, and continue from a cursor; the
``(tenant_id, at)`` index serves both the scope and the order.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from app.extensions import db
from app.models import AuditRecord
from app.security import Principal
from app.services.errors import BadRequest
from app.services.pagination import decode_cursor, encode_cursor
from app.services.windows import as_utc, check_window, parse_time

logger = logging.getLogger(__name__)

FILTERS = ("actor", "action", "target", "target_type", "since", "until")
_MAX_FILTER_LENGTH = 300


def _text(args: Mapping[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > _MAX_FILTER_LENGTH:
        raise BadRequest(f"{name} is longer than {_MAX_FILTER_LENGTH} characters", code="invalid_parameter",
                         details={"param": name})
    return value or None


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    state = decode_cursor(cursor)
    if not state:
        return None
    try:
        at, after_id = as_utc(datetime.fromisoformat(str(state["at"]))), state["id"]
    except (KeyError, ValueError) as exc:
        raise BadRequest("invalid cursor", code="invalid_cursor") from exc
    if isinstance(after_id, bool) or not isinstance(after_id, int):
        raise BadRequest("invalid cursor", code="invalid_cursor")
    return at, after_id


def list_audit(principal: Principal, args: Mapping[str, str], limit: int,
               cursor: str | None) -> tuple[list[AuditRecord], str | None]:
    """A page of the audit records the principal may read, newest first, filtered by ``args`` (see module doc)."""
    scope = AuditRecord.tenant_id == principal.tenant_id
    if principal.is_admin:
        scope = or_(scope, AuditRecord.tenant_id.is_(None))
    query = select(AuditRecord).where(scope)
    actor, action, target, target_type = (_text(args, n) for n in ("actor", "action", "target", "target_type"))
    if actor:
        query = query.where(AuditRecord.actor == actor)
    if action:
        if action.endswith("*"):
            query = query.where(AuditRecord.action.startswith(action[:-1], autoescape=True))
        else:
            query = query.where(AuditRecord.action == action)
    if target:
        query = query.where(AuditRecord.target == target)
    if target_type:
        query = query.where(AuditRecord.target_type == target_type)
    since = parse_time(args.get("since"), "since", param=True)
    until = parse_time(args.get("until"), "until", param=True)
    check_window(since, until)
    if since is not None:
        query = query.where(AuditRecord.at >= since)
    if until is not None:
        query = query.where(AuditRecord.at < until)
    after = _after(cursor)
    if after is not None:
        at, after_id = after
        query = query.where(or_(AuditRecord.at < at, and_(AuditRecord.at == at, AuditRecord.id < after_id)))
    rows = list(db.session.execute(
        query.order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).limit(limit + 1)).scalars())
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        nxt = encode_cursor({"at": as_utc(last.at).isoformat(), "id": last.id})
    return rows[:limit], nxt


def audit_to_json(row: AuditRecord) -> dict[str, Any]:
    """One record as the console (and an export) shows it."""
    return {"id": row.id, "at": row.at, "actor": row.actor, "action": row.action, "target_type": row.target_type,
            "target": row.target, "ip": row.ip, "details": row.details}
