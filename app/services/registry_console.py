"""What the console's schema pages show: subjects at a glance, one subject's versions, a diff of two versions."""
from __future__ import annotations

import difflib
import json
import logging
from typing import Any

from sqlalchemy import func, select

from app.extensions import db
from app.models.schema import RegistryConfig, RegistrySchema, RegistrySubjectVersion
from app.security import Principal
from app.services import registry_config
from app.services import registry_errors as errors
from app.services import registry_store as store

logger = logging.getLogger(__name__)


def pretty(text: str) -> str:
    """A schema indented for reading (unchanged when it is not JSON, as Protobuf is not)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def overview(principal: Principal) -> dict[str, Any]:
    """The tenant's subjects with their latest version, and the global level and mode."""
    sv = RegistrySubjectVersion
    latest = select(sv.subject, func.max(sv.version).label("version"), func.count().label("count")) \
        .where(sv.tenant_id == principal.tenant_id, sv.deleted.is_(False)).group_by(sv.subject).subquery()
    rows = db.session.execute(
        select(latest.c.subject, latest.c.version, latest.c.count, RegistrySchema.id, RegistrySchema.schema_type)
        .join(sv, (sv.tenant_id == principal.tenant_id) & (sv.subject == latest.c.subject)
              & (sv.version == latest.c.version))
        .join(RegistrySchema, (RegistrySchema.id == sv.schema_id) & (RegistrySchema.tenant_id == sv.tenant_id))
        .order_by(latest.c.subject)).all()
    # why one query for every level: a per-subject look-up would be two queries per row of the page
    levels = dict(db.session.execute(select(RegistryConfig.subject, RegistryConfig.compatibility).where(
        RegistryConfig.tenant_id == principal.tenant_id).order_by(RegistryConfig.id.desc())).all())
    global_level = levels.get(None, registry_config.DEFAULT_LEVEL)
    subjects = [{"subject": subject, "latest": version, "versions": count, "id": schema_id, "schema_type": kind,
                 "level": levels.get(subject, global_level)}
                for subject, version, count, schema_id, kind in rows]
    return {"subjects": subjects, "global_level": global_level,
            "global_mode": registry_config.get_mode(principal, None)["mode"]}


def subject_detail(principal: Principal, subject: str, version: str | None) -> dict[str, Any]:
    """A subject's versions, one of them shown in full (the latest by default), and its level."""
    rows = store.versions(principal.tenant_id, subject)
    if not rows:
        raise errors.subject_not_found(subject)
    shown = store.get_version(principal.tenant_id, subject, version or "latest")
    schema = store.schema_row(principal.tenant_id, shown.schema_id)
    own = registry_config.get_config(principal, subject, default_to_global=False) \
        if _has_own_level(principal, subject) else None
    return {
        "subject": subject,
        "versions": [{"version": r.version, "id": r.schema_id, "created_at": r.created_at} for r in rows],
        "shown": {**store.version_json(shown, schema), "pretty": pretty(schema.schema_text)},
        "level": registry_config.effective_level(principal.tenant_id, subject),
        "own_level": own["compatibilityLevel"] if own else None,
        "mode": registry_config.effective_mode(principal.tenant_id, subject),
    }


def _has_own_level(principal: Principal, subject: str) -> bool:
    try:
        registry_config.get_config(principal, subject)
    except errors.RegistryError:
        return False
    return True


def diff(principal: Principal, subject: str, left: str, right: str) -> dict[str, Any]:
    """A side-by-side HTML diff (difflib escapes the schema text) of two versions of a subject."""
    a = store.get_version(principal.tenant_id, subject, left)
    b = store.get_version(principal.tenant_id, subject, right)
    text_a = pretty(store.schema_row(principal.tenant_id, a.schema_id).schema_text).splitlines()
    text_b = pretty(store.schema_row(principal.tenant_id, b.schema_id).schema_text).splitlines()
    table = difflib.HtmlDiff(tabsize=2, wrapcolumn=70).make_table(
        text_a, text_b, f"version {a.version} (id {a.schema_id})", f"version {b.version} (id {b.schema_id})",
        context=False)
    return {"subject": subject, "left": a.version, "right": b.version, "table": table,
            "same": text_a == text_b}


def draft_check(principal: Principal, subject: str, schema_type: str, text: str) -> dict[str, Any]:
    """Would this draft register under the subject? ``{"is_compatible", "messages"}`` or ``{"error"}``."""
    try:
        return registry_config.compatibility_check(principal, subject, None,
                                                   {"schema": text, "schemaType": schema_type}, verbose=True)
    except errors.RegistryError as exc:
        return {"error": exc.message, "error_code": exc.error_code}
