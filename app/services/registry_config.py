"""Registry settings per tenant: compatibility levels and modes (global and per subject), compatibility tests."""
from __future__ import annotations

import logging
from typing import Any, TypeVar

from sqlalchemy import delete, select

from app.bus.registry import LEVELS, check_compatibility
from app.extensions import db
from app.models.schema import RegistryConfig, RegistryMode, RegistrySubjectVersion
from app.security import Principal
from app.services import audit
from app.services import registry_errors as errors
from app.services import registry_store as store
from app.services.schema_validation import forget_subject

logger = logging.getLogger(__name__)

DEFAULT_LEVEL = "BACKWARD"
DEFAULT_MODE = "READWRITE"
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")

M = TypeVar("M", RegistryConfig, RegistryMode)


def _row(model: type[M], tenant_id: int, subject: str | None) -> M | None:
    # why order by id and first(): the global row (subject NULL) is not covered by the unique constraint,
    # so a racing double insert is possible; the oldest row wins and writes touch every matching row.
    scope = model.subject.is_(None) if subject is None else model.subject == subject
    return db.session.execute(select(model).where(model.tenant_id == tenant_id, scope)
                              .order_by(model.id).limit(1)).scalar_one_or_none()


def _delete_rows(model: type[M], tenant_id: int, subject: str | None) -> None:
    scope = model.subject.is_(None) if subject is None else model.subject == subject
    db.session.execute(delete(model).where(model.tenant_id == tenant_id, scope))


def effective_level(tenant_id: int, subject: str) -> str:
    """The compatibility level that applies to ``subject``: its own, else the tenant's, else BACKWARD."""
    row = _row(RegistryConfig, tenant_id, subject) or _row(RegistryConfig, tenant_id, None)
    return row.compatibility if row is not None else DEFAULT_LEVEL


def effective_mode(tenant_id: int, subject: str) -> str:
    """The mode that applies to ``subject``: its own, else the tenant's, else READWRITE."""
    row = _row(RegistryMode, tenant_id, subject) or _row(RegistryMode, tenant_id, None)
    return row.mode if row is not None else DEFAULT_MODE


def _config_json(row: RegistryConfig | None) -> dict[str, Any]:
    out: dict[str, Any] = {"compatibilityLevel": row.compatibility if row is not None else DEFAULT_LEVEL}
    if row is not None and row.normalize is not None:
        out["normalize"] = row.normalize
    return out


def get_config(principal: Principal, subject: str | None, default_to_global: bool = False) -> dict[str, Any]:
    """``{"compatibilityLevel"}`` of the tenant or a subject (40408 for a subject without its own level)."""
    row = _row(RegistryConfig, principal.tenant_id, subject)
    if row is None and subject is not None:
        if not default_to_global:
            raise errors.RegistryError(errors.SUBJECT_COMPATIBILITY_NOT_CONFIGURED, f"Subject '{subject}' does not "
                                       "have subject-level compatibility configured")
        row = _row(RegistryConfig, principal.tenant_id, None)
    return _config_json(row)


def put_config(principal: Principal, subject: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """Set a compatibility level (42203 for an unknown one); returns ``{"compatibility"}``."""
    if subject is not None:
        store.check_subject(subject)
    level, normalize = body.get("compatibility"), body.get("normalize")
    row = _row(RegistryConfig, principal.tenant_id, subject)
    if level is None and normalize is not None and row is not None:
        level = row.compatibility
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise errors.RegistryError(errors.INVALID_COMPATIBILITY_LEVEL, "Invalid compatibility level. Valid values "
                                   f"are {', '.join(LEVELS)}")
    if normalize is not None and not isinstance(normalize, bool):
        raise errors.RegistryError(errors.INVALID_COMPATIBILITY_LEVEL, "normalize must be true or false")
    level = level.upper()
    if row is None:
        db.session.add(RegistryConfig(tenant_id=principal.tenant_id, subject=subject, compatibility=level,
                                      normalize=normalize))
    else:
        row.compatibility = level
        if normalize is not None:
            row.normalize = normalize
    audit.record(principal, "schema.config", "subject" if subject else "registry", subject, {"compatibility": level})
    db.session.commit()
    out: dict[str, Any] = {"compatibility": level}
    if normalize is not None:
        out["normalize"] = normalize
    return out


def delete_config(principal: Principal, subject: str | None) -> dict[str, Any]:
    """Remove a level (the subject then follows the tenant's; the tenant's goes back to BACKWARD)."""
    row = _row(RegistryConfig, principal.tenant_id, subject)
    if row is None and subject is not None:
        raise errors.subject_not_found(subject)
    previous = _config_json(row)
    _delete_rows(RegistryConfig, principal.tenant_id, subject)
    audit.record(principal, "schema.config_delete", "subject" if subject else "registry", subject, previous)
    db.session.commit()
    return previous


def get_mode(principal: Principal, subject: str | None, default_to_global: bool = False) -> dict[str, Any]:
    """``{"mode"}`` of the tenant or a subject (40409 for a subject without its own mode)."""
    row = _row(RegistryMode, principal.tenant_id, subject)
    if row is None and subject is not None:
        if not default_to_global:
            raise errors.RegistryError(errors.SUBJECT_MODE_NOT_CONFIGURED, f"Subject '{subject}' does not have "
                                       "subject-level mode configured")
        row = _row(RegistryMode, principal.tenant_id, None)
    return {"mode": row.mode if row is not None else DEFAULT_MODE}


def put_mode(principal: Principal, subject: str | None, body: dict[str, Any], force: bool) -> dict[str, Any]:
    """Set a mode (42204 for an unknown one; IMPORT over existing subjects needs ``force``)."""
    if subject is not None:
        store.check_subject(subject)
    mode = body.get("mode")
    if not isinstance(mode, str) or mode.upper() not in MODES:
        raise errors.RegistryError(errors.INVALID_MODE, f"Invalid mode. Valid values are {', '.join(MODES)}")
    mode = mode.upper()
    if mode == "IMPORT" and not force and _has_versions(principal.tenant_id, subject):
        raise errors.not_permitted("Cannot import since found existing subjects")
    row = _row(RegistryMode, principal.tenant_id, subject)
    if row is None:
        db.session.add(RegistryMode(tenant_id=principal.tenant_id, subject=subject, mode=mode))
    else:
        row.mode = mode
    audit.record(principal, "schema.mode", "subject" if subject else "registry", subject, {"mode": mode})
    db.session.commit()
    return {"mode": mode}


def _has_versions(tenant_id: int, subject: str | None) -> bool:
    sv = RegistrySubjectVersion
    query = select(sv.id).where(sv.tenant_id == tenant_id, sv.deleted.is_(False)).limit(1)
    if subject is not None:
        query = query.where(sv.subject == subject)
    return db.session.execute(query).first() is not None


def delete_mode(principal: Principal, subject: str | None) -> dict[str, Any]:
    """Remove a mode; returns the one removed (40401 for a subject without its own)."""
    row = _row(RegistryMode, principal.tenant_id, subject)
    if row is None and subject is not None:
        raise errors.subject_not_found(subject)
    previous = {"mode": row.mode if row is not None else DEFAULT_MODE}
    _delete_rows(RegistryMode, principal.tenant_id, subject)
    audit.record(principal, "schema.mode_delete", "subject" if subject else "registry", subject, previous)
    db.session.commit()
    return previous


def compatibility_check(principal: Principal, subject: str, version: str | None, body: dict[str, Any],
                       verbose: bool) -> dict[str, Any]:
    """Would this schema be accepted? Against one version (``version``) or as a registration would check."""
    tenant_id = principal.tenant_id
    parsed, _ = store.parse_new(tenant_id, body.get("schemaType"), body.get("schema"),
                                store.parse_refs(body.get("references")))
    level = effective_level(tenant_id, subject)
    if version is not None:
        row = store.get_version(tenant_id, subject, version)
        rows = [row]
        level = level.removesuffix("_TRANSITIVE")  # one version named: check against it alone
    else:
        rows = store.versions(tenant_id, subject)
    olds = [store.parsed_schema(store.schema_row(tenant_id, r.schema_id)) for r in rows]
    messages = check_compatibility(level, parsed, olds, versions=[r.version for r in rows])
    out: dict[str, Any] = {"is_compatible": not messages}
    if verbose:
        out["messages"] = messages
    return out


def forget_latest(tenant_id: int, subject: str) -> None:
    """Drop the cached latest version of a subject after it changed (this process; others expire it shortly)."""
    forget_subject(tenant_id, subject)
