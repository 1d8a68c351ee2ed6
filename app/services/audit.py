"""Audit records for every state-changing call."""
from __future__ import annotations

from typing import Any

from flask import has_request_context, request

from app.extensions import db
from app.models import AuditRecord
from app.security import Principal


def record(principal: Principal | None, action: str, target_type: str, target: str | None,
           details: dict[str, Any] | None = None, actor: str | None = None,
           tenant_id: int | None = None) -> AuditRecord:
    """Add an audit record to the current transaction (committed with the change it describes)."""
    ip = request.remote_addr if has_request_context() else None
    entry = AuditRecord(
        tenant_id=tenant_id if tenant_id is not None else (principal.tenant_id if principal else None),
        actor=actor or (principal.actor if principal else "system"),
        action=action,
        target_type=target_type,
        target=target,
        ip=ip,
        details=details or None,
    )
    db.session.add(entry)
    return entry
