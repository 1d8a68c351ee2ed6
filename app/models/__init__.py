"""SQLAlchemy models, one module per domain. They share Flask-AppBuilder's declarative base."""
from __future__ import annotations

from app.models.api_key import ApiKey
from app.models.audit import AuditRecord
from app.models.idempotency import IdempotencyRecord
from app.models.stream import Stream
from app.models.tenant import Tenant, user_tenants

__all__ = ["ApiKey", "AuditRecord", "IdempotencyRecord", "Stream", "Tenant", "user_tenants"]
