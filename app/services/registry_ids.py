"""Schema registry reads by schema id, and the list of schemas (``/schemas``)."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app.bus.registry import SCHEMA_TYPES
from app.extensions import db
from app.models.schema import RegistrySchema, RegistrySubjectVersion
from app.security import Principal
from app.services import registry_store as store

logger = logging.getLogger(__name__)


def schema_types() -> list[str]:
    """The schema types this registry parses."""
    return list(SCHEMA_TYPES)


def get_schema(principal: Principal, schema_id: int) -> dict[str, Any]:
    """``{"schema", "schemaType"?, "references"?}`` of the tenant's schema (40403 when absent or another tenant's)."""
    return store.schema_json(store.schema_row(principal.tenant_id, schema_id))


def get_schema_text(principal: Principal, schema_id: int) -> str:
    """The schema text alone."""
    return store.schema_row(principal.tenant_id, schema_id).schema_text


def _usages(principal: Principal, schema_id: int, deleted: bool) -> list[RegistrySubjectVersion]:
    store.schema_row(principal.tenant_id, schema_id)  # 40403 first, even when no version uses it
    sv = RegistrySubjectVersion
    query = select(sv).where(sv.tenant_id == principal.tenant_id, sv.schema_id == schema_id)
    if not deleted:
        query = query.where(sv.deleted.is_(False))
    return list(db.session.execute(query.order_by(sv.subject, sv.version)).scalars())


def subjects_of(principal: Principal, schema_id: int, deleted: bool) -> list[str]:
    """The subjects with a version holding this schema."""
    return sorted({row.subject for row in _usages(principal, schema_id, deleted)})


def versions_of(principal: Principal, schema_id: int, deleted: bool) -> list[dict[str, Any]]:
    """``[{"subject", "version"}]`` of every version holding this schema."""
    return [{"subject": row.subject, "version": row.version} for row in _usages(principal, schema_id, deleted)]


def list_schemas(principal: Principal, prefix: str | None, deleted: bool, latest_only: bool, offset: int,
                 limit: int) -> list[dict[str, Any]]:
    """Subject versions with their schemas, by subject and version (``latest_only``: each subject's newest)."""
    sv = RegistrySubjectVersion
    query = select(sv, RegistrySchema).join(RegistrySchema, (RegistrySchema.id == sv.schema_id)
                                            & (RegistrySchema.tenant_id == sv.tenant_id)) \
        .where(sv.tenant_id == principal.tenant_id).order_by(sv.subject, sv.version)
    if prefix:
        query = query.where(sv.subject.startswith(prefix, autoescape=True))
    if not deleted:
        query = query.where(sv.deleted.is_(False))
    rows = list(db.session.execute(query))
    if latest_only:
        newest: dict[str, tuple[RegistrySubjectVersion, RegistrySchema]] = {}
        for version, schema in rows:
            newest[version.subject] = (version, schema)
        rows = list(newest.values())  # type: ignore[arg-type]
    page = rows[offset:] if limit < 0 else rows[offset:offset + limit]
    return [store.version_json(version, schema) for version, schema in page]
