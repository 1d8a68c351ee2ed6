"""Schema registry use cases with Confluent's semantics: register, look up, list, soft and permanent deletes."""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Integer, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from app.bus.registry import check_compatibility
from app.extensions import db
from app.models.schema import (
    RegistryConfig,
    RegistryMode,
    RegistrySchema,
    RegistrySchemaReference,
    RegistrySubjectVersion,
)
from app.security import Principal
from app.services import audit, registry_config
from app.services import registry_errors as errors
from app.services import registry_store as store
from app.services.registry_store import Ref

logger = logging.getLogger(__name__)

MAX_SCHEMA_CHARS = 1_000_000
REGISTER_ATTEMPTS = 3


def _schema_body(body: dict[str, Any]) -> tuple[Any, Any, list[Ref]]:
    text = body.get("schema")
    if isinstance(text, str) and len(text) > MAX_SCHEMA_CHARS:
        raise errors.RegistryError(42209, f"schema is larger than {MAX_SCHEMA_CHARS} characters")
    return body.get("schemaType"), text, store.parse_refs(body.get("references"))


def register(principal: Principal, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    """Register a schema under a subject: its existing id if already there, else a new version (409: incompatible)."""
    store.check_subject(subject)
    for attempt in range(REGISTER_ATTEMPTS):
        try:
            result = _register_once(principal, subject, body)
            db.session.commit()
            return result
        except IntegrityError:
            # why: two writers raced for the same version number or fingerprint; the loser tries again
            db.session.rollback()
            if attempt == REGISTER_ATTEMPTS - 1:
                raise errors.RegistryError(errors.STORE_ERROR, "concurrent registrations: try again") from None
    raise AssertionError("unreachable")


def _register_once(principal: Principal, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    tenant_id = principal.tenant_id
    mode = registry_config.effective_mode(tenant_id, subject)
    wanted_id, wanted_version = body.get("id"), body.get("version")
    importing = mode == "IMPORT"
    if mode in ("READONLY", "READONLY_OVERRIDE"):
        raise errors.not_permitted(f"Subject {subject} is in read-only mode")
    if not importing and wanted_id not in (None, -1, 0):
        raise errors.not_permitted(f"Subject {subject} is not in import mode")
    schema_type, text, refs = _schema_body(body)
    parsed, refs = store.parse_new(tenant_id, schema_type, text, refs)
    fingerprint = store.registry_fingerprint(parsed, refs)
    existing = db.session.execute(select(RegistrySchema).where(
        RegistrySchema.tenant_id == tenant_id, RegistrySchema.fingerprint == fingerprint)).scalar_one_or_none()
    rows = store.versions(tenant_id, subject, include_deleted=True)
    live = [r for r in rows if not r.deleted]
    if existing is not None:
        for row in live:
            if row.schema_id == existing.id:
                if wanted_id not in (None, -1, 0) and wanted_id != existing.id:
                    raise _id_mismatch(existing.id, wanted_id)
                return {"id": existing.id, "version": row.version}  # already registered: same id, no new version
    if importing:
        schema, version = _import_target(tenant_id, subject, existing, wanted_id, wanted_version, rows)
    else:
        level = registry_config.effective_level(tenant_id, subject)
        olds = [store.parsed_schema(store.schema_row(tenant_id, r.schema_id)) for r in live]
        messages = check_compatibility(level, parsed, olds, versions=[r.version for r in live])
        if messages:
            raise errors.RegistryError(errors.INCOMPATIBLE_SCHEMA, "Schema being registered is incompatible with "
                                       f"an earlier schema for subject \"{subject}\", details: {messages}")
        schema, version = existing, (max(r.version for r in rows) + 1 if rows else 1)
    if schema is None:
        schema = _new_schema(tenant_id, parsed.schema_type, parsed.raw, fingerprint, refs,
                             wanted_id if importing else None)
    db.session.add(RegistrySubjectVersion(tenant_id=tenant_id, subject=subject, version=version,
                                          schema_id=schema.id, deleted=False))
    db.session.flush()
    audit.record(principal, "schema.register", "subject", subject,
                 {"version": version, "id": schema.id, "schema_type": schema.schema_type})
    registry_config.forget_latest(tenant_id, subject)
    logger.info("registered %s version %s (id %s) in tenant %s", subject, version, schema.id, principal.tenant_slug)
    return {"id": schema.id, "version": version}


def _import_target(tenant_id: int, subject: str, existing: RegistrySchema | None, wanted_id: Any,
                   wanted_version: Any, rows: list[RegistrySubjectVersion]) -> tuple[RegistrySchema | None, int]:
    """IMPORT mode: keep the ids and versions of the registry being migrated from (no compatibility check)."""
    if wanted_id not in (None, -1, 0):
        if isinstance(wanted_id, bool) or not isinstance(wanted_id, int) or not 1 <= wanted_id <= store.MAX_VERSION:
            raise errors.invalid_schema("id must be a positive integer")
        if existing is not None and existing.id != wanted_id:
            raise _id_mismatch(existing.id, wanted_id)
        # why not tenant-scoped: ids are global, so an id another tenant holds is taken too (same answer for both)
        taken = db.session.get(RegistrySchema, wanted_id)
        if existing is None and taken is not None:
            raise errors.not_permitted(f"Overwrite new schema with id {wanted_id} is not permitted.")
    version = max((r.version for r in rows), default=0) + 1
    if wanted_version not in (None, -1, 0):
        version = store.parse_version(wanted_version) or version
        if any(r.version == version for r in rows):
            raise errors.not_permitted(f"Overwrite new schema with version {version} is not permitted.")
    return existing, version


def _id_mismatch(existing: int, wanted: Any) -> errors.RegistryError:
    return errors.RegistryError(errors.ID_DOES_NOT_MATCH, f"Schema already registered with id {existing} "
                                f"instead of input id {wanted}")


def _new_schema(tenant_id: int, schema_type: str, text: str, fingerprint: str, refs: list[Ref],
                schema_id: int | None) -> RegistrySchema:
    schema = RegistrySchema(tenant_id=tenant_id, schema_type=schema_type, schema_text=text, fingerprint=fingerprint)
    if schema_id is not None:
        schema.id = schema_id
    db.session.add(schema)
    db.session.flush()
    if schema_id is not None and db.session.get_bind().dialect.name == "postgresql":
        # why: an explicit id leaves the serial sequence behind; move it past the highest id in use
        db.session.execute(select(func.setval(func.pg_get_serial_sequence(RegistrySchema.__tablename__, "id"),
                                              select(func.max(RegistrySchema.id)).scalar_subquery())))
    for position, ref in enumerate(refs):
        db.session.add(RegistrySchemaReference(tenant_id=tenant_id, schema_id=schema.id, position=position,
                                               name=ref.name, subject=ref.subject, version=ref.version))
    return schema


def lookup(principal: Principal, subject: str, body: dict[str, Any], include_deleted: bool) -> dict[str, Any]:
    """The version of ``subject`` holding this schema (40401 no subject, 40403 not under it)."""
    tenant_id = principal.tenant_id
    rows = store.versions(tenant_id, subject, include_deleted)
    if not rows:
        raise errors.subject_not_found(subject)
    schema_type, text, refs = _schema_body(body)
    parsed, refs = store.parse_new(tenant_id, schema_type, text, refs)
    fingerprint = store.registry_fingerprint(parsed, refs)
    schema = db.session.execute(select(RegistrySchema).where(
        RegistrySchema.tenant_id == tenant_id, RegistrySchema.fingerprint == fingerprint)).scalar_one_or_none()
    match = [r for r in rows if schema is not None and r.schema_id == schema.id]
    if not match or schema is None:
        raise errors.schema_not_found()
    return store.version_json(match[-1], schema)


def list_subjects(principal: Principal, prefix: str | None, deleted: bool, deleted_only: bool) -> list[str]:
    """Subject names (with a live version; ``deleted``: also soft-deleted ones; ``deleted_only``: only those)."""
    sv = RegistrySubjectVersion
    flag = sv.deleted.cast(Integer)
    query = select(sv.subject, func.min(flag), func.max(flag)) \
        .where(sv.tenant_id == principal.tenant_id).group_by(sv.subject).order_by(sv.subject)
    if prefix:
        query = query.where(sv.subject.startswith(prefix, autoescape=True))
    out = []
    for subject, any_live, any_deleted in db.session.execute(query):
        has_live = any_live == 0
        if deleted_only:
            if any_deleted:
                out.append(subject)
        elif has_live or deleted:
            out.append(subject)
    return out


def list_versions(principal: Principal, subject: str, deleted: bool, deleted_only: bool = False) -> list[int]:
    """The subject's version numbers (40401 when it has none)."""
    rows = store.versions(principal.tenant_id, subject, include_deleted=deleted or deleted_only)
    if not rows:
        raise errors.subject_not_found(subject)
    return [r.version for r in rows if r.deleted or not deleted_only]


def get_version(principal: Principal, subject: str, version: str, deleted: bool) -> dict[str, Any]:
    """One version as Confluent shows it."""
    row = store.get_version(principal.tenant_id, subject, version, include_deleted=deleted)
    return store.version_json(row, store.schema_row(principal.tenant_id, row.schema_id))


def referenced_by(principal: Principal, subject: str, version: str) -> list[int]:
    """Ids of the tenant's live schemas that reference this subject version."""
    row = store.get_version(principal.tenant_id, subject, version, include_deleted=True)
    return _referrers(principal.tenant_id, subject, row.version, live_only=True)


def _referrers(tenant_id: int, subject: str, version: int, live_only: bool) -> list[int]:
    ref, sv = RegistrySchemaReference, RegistrySubjectVersion
    query = select(ref.schema_id).distinct() \
        .join(sv, (sv.tenant_id == ref.tenant_id) & (sv.schema_id == ref.schema_id)) \
        .where(ref.tenant_id == tenant_id, ref.subject == subject, ref.version == version).order_by(ref.schema_id)
    if live_only:
        query = query.where(sv.deleted.is_(False))
    return list(db.session.execute(query).scalars())


def _check_writable(tenant_id: int, subject: str) -> None:
    if registry_config.effective_mode(tenant_id, subject) in ("READONLY", "READONLY_OVERRIDE"):
        raise errors.not_permitted(f"Subject {subject} is in read-only mode")


def _check_unreferenced(tenant_id: int, subject: str, rows: list[RegistrySubjectVersion], live_only: bool) -> None:
    for row in rows:
        if _referrers(tenant_id, subject, row.version, live_only):
            raise errors.RegistryError(errors.REFERENCE_EXISTS, "One or more references exist to the schema "
                                       f"{{subject={subject},version={row.version}}}.")


def delete_subject(principal: Principal, subject: str, permanent: bool) -> list[int]:
    """Soft-delete every live version, or (``permanent``, after a soft delete) remove them; returns the versions."""
    tenant_id = principal.tenant_id
    _check_writable(tenant_id, subject)
    rows = store.versions(tenant_id, subject, include_deleted=True)
    if not rows:
        raise errors.subject_not_found(subject)
    live = [r for r in rows if not r.deleted]
    if permanent:
        if live:
            raise errors.RegistryError(errors.SUBJECT_NOT_SOFT_DELETED, f"Subject '{subject}' was not deleted "
                                       "first before being permanently deleted")
        _check_unreferenced(tenant_id, subject, rows, live_only=False)
        _purge(tenant_id, rows)
        # why: a permanently deleted subject leaves nothing behind, its settings included (as Confluent)
        for model in (RegistryConfig, RegistryMode):
            db.session.execute(delete(model).where(model.tenant_id == tenant_id, model.subject == subject))
        done = [r.version for r in rows]
    else:
        if not live:
            raise errors.RegistryError(errors.SUBJECT_SOFT_DELETED, f"Subject '{subject}' was soft deleted. "
                                       "Set permanent=true to delete permanently")
        _check_unreferenced(tenant_id, subject, live, live_only=True)
        _soft(tenant_id, subject, [r.version for r in live])
        done = [r.version for r in live]
    audit.record(principal, "schema.delete_subject", "subject", subject, {"versions": done, "permanent": permanent})
    db.session.commit()
    registry_config.forget_latest(tenant_id, subject)
    return done


def delete_version(principal: Principal, subject: str, version: str, permanent: bool) -> int:
    """Soft-delete one version, or (``permanent``, after a soft delete) remove it; returns its number."""
    tenant_id = principal.tenant_id
    _check_writable(tenant_id, subject)
    # why: a version named by number is found even when soft-deleted (40406 / permanent delete need it);
    # "latest" means the newest live version unless deleting permanently
    named = store.parse_version(version) is not None
    row = store.get_version(tenant_id, subject, version, include_deleted=permanent or named)
    if permanent:
        if not row.deleted:
            raise errors.RegistryError(errors.VERSION_NOT_SOFT_DELETED, f"Subject '{subject}' Version {row.version} "
                                       "was not deleted first before being permanently deleted")
        _check_unreferenced(tenant_id, subject, [row], live_only=False)
        _purge(tenant_id, [row])
    else:
        if row.deleted:
            raise errors.RegistryError(errors.VERSION_SOFT_DELETED, f"Subject '{subject}' Version {row.version} "
                                       "was soft deleted. Set permanent=true to delete permanently")
        _check_unreferenced(tenant_id, subject, [row], live_only=True)
        _soft(tenant_id, subject, [row.version])
    number = row.version
    audit.record(principal, "schema.delete_version", "subject", subject, {"version": number, "permanent": permanent})
    db.session.commit()
    registry_config.forget_latest(tenant_id, subject)
    return number


def _soft(tenant_id: int, subject: str, numbers: list[int]) -> None:
    sv = RegistrySubjectVersion
    db.session.execute(update(sv).where(sv.tenant_id == tenant_id, sv.subject == subject, sv.version.in_(numbers))
                       .values(deleted=True))


def _purge(tenant_id: int, rows: list[RegistrySubjectVersion]) -> None:
    """Delete version rows, then the schemas no version uses any more (their ids are never handed out again)."""
    sv = RegistrySubjectVersion
    schema_ids = {r.schema_id for r in rows}
    db.session.execute(delete(sv).where(sv.tenant_id == tenant_id, sv.id.in_([r.id for r in rows])))
    used = set(db.session.execute(select(sv.schema_id).distinct().where(
        sv.tenant_id == tenant_id, sv.schema_id.in_(schema_ids))).scalars())
    orphans = sorted(schema_ids - used)
    if orphans:
        db.session.execute(delete(RegistrySchemaReference).where(RegistrySchemaReference.tenant_id == tenant_id,
                                                                 RegistrySchemaReference.schema_id.in_(orphans)))
        db.session.execute(delete(RegistrySchema).where(RegistrySchema.tenant_id == tenant_id,
                                                        RegistrySchema.id.in_(orphans)))
        store.forget_parsed(orphans)
