"""Tenant-scoped reads of the schema registry tables, reference resolution and a parsed-schema cache."""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from flask import current_app
from sqlalchemy import select

from app.bus.registry import ParsedSchema, SchemaError, parse_schema
from app.extensions import db
from app.models.schema import SUBJECT_LENGTH, RegistrySchema, RegistrySchemaReference, RegistrySubjectVersion
from app.services import registry_errors as errors

logger = logging.getLogger(__name__)

MAX_VERSION = 2**31 - 1
_VERSION_RE = re.compile(r"^-?[0-9]{1,10}$")
_BAD_SUBJECT_RE = re.compile(r"[\x00-\x1f\x7f]")
PARSED_CACHE_SIZE = 2048


@dataclass(frozen=True)
class Ref:
    """A reference as registered: ``name`` resolves to version ``version`` of ``subject``."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        """Confluent's reference object."""
        return {"name": self.name, "subject": self.subject, "version": self.version}


def check_subject(subject: str) -> str:
    """A usable subject name (42208 otherwise)."""
    if not subject or len(subject) > SUBJECT_LENGTH or _BAD_SUBJECT_RE.search(subject):
        raise errors.RegistryError(errors.INVALID_SUBJECT, f"The specified subject '{subject[:300]}' is not valid.")
    return subject


def parse_version(text: str | int) -> int | None:
    """A version id: None for ``latest`` / ``-1``, else 1..2^31-1 (42202 otherwise)."""
    value = str(text)
    if value == "latest":
        return None
    if _VERSION_RE.match(value):
        number = int(value)
        if number == -1:
            return None
        if 1 <= number <= MAX_VERSION:
            return number
    raise errors.invalid_version(value[:100])


def versions(tenant_id: int, subject: str, include_deleted: bool = False) -> list[RegistrySubjectVersion]:
    """The subject's versions, oldest first (soft-deleted ones only when asked)."""
    query = select(RegistrySubjectVersion).where(RegistrySubjectVersion.tenant_id == tenant_id,
                                                 RegistrySubjectVersion.subject == subject)
    if not include_deleted:
        query = query.where(RegistrySubjectVersion.deleted.is_(False))
    return list(db.session.execute(query.order_by(RegistrySubjectVersion.version)).scalars())


def get_version(tenant_id: int, subject: str, version_text: str | int,
                include_deleted: bool = False) -> RegistrySubjectVersion:
    """One version of a subject (``latest`` / ``-1``: the newest); 40401 / 40402 / 42202."""
    number = parse_version(version_text)
    rows = versions(tenant_id, subject, include_deleted)
    if not rows:
        raise errors.subject_not_found(subject)
    if number is None:
        return rows[-1]
    for row in rows:
        if row.version == number:
            return row
    raise errors.version_not_found(number)


def schema_row(tenant_id: int, schema_id: int) -> RegistrySchema:
    """The tenant's schema ``schema_id``; 40403 when absent or another tenant's."""
    row = db.session.execute(select(RegistrySchema).where(RegistrySchema.tenant_id == tenant_id,
                                                          RegistrySchema.id == schema_id)).scalar_one_or_none()
    if row is None:
        raise errors.schema_not_found(schema_id)
    return row


def references_of(tenant_id: int, schema_id: int) -> list[Ref]:
    """The references a schema was registered with, in their given order."""
    rows = db.session.execute(
        select(RegistrySchemaReference).where(RegistrySchemaReference.tenant_id == tenant_id,
                                              RegistrySchemaReference.schema_id == schema_id)
        .order_by(RegistrySchemaReference.position)).scalars()
    return [Ref(r.name, r.subject, r.version) for r in rows]


def parse_refs(value: Any) -> list[Ref]:
    """The ``references`` of a request body (42201 when malformed)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.invalid_schema("references must be a list")
    refs: list[Ref] = []
    for item in value:
        if not isinstance(item, dict):
            raise errors.invalid_schema("each reference must be an object with name, subject, version")
        name, subject, version = item.get("name"), item.get("subject"), item.get("version")
        if not isinstance(name, str) or not name or not isinstance(subject, str) or not subject:
            raise errors.invalid_schema("a reference needs a name and a subject")
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            raise errors.invalid_schema(f"reference '{name}' needs a version")
        refs.append(Ref(name, check_subject(subject), -1 if parse_version(version) is None else int(version)))
    return refs


def resolve_refs(tenant_id: int, refs: Sequence[Ref]) -> tuple[list[Ref], dict[str, str]]:
    """References with concrete versions, and every schema text they bring in (transitively) by name.

    A referenced version may itself have references; the core parsers need all of them. 42201 for a
    reference to a subject or version the tenant does not have (soft-deleted versions still resolve, as
    in Confluent: a deleted version keeps serving the schemas that use it).
    """
    concrete: list[Ref] = []
    texts: dict[str, str] = {}
    pending: list[tuple[Ref, bool]] = [(ref, True) for ref in refs]
    seen: set[tuple[str, int]] = set()
    while pending:
        ref, top = pending.pop(0)
        try:
            row = get_version(tenant_id, ref.subject, ref.version, include_deleted=ref.version != -1)
        except errors.RegistryError as exc:
            raise errors.invalid_schema(f"reference '{ref.name}' to subject '{ref.subject}' version "
                                        f"{ref.version}: {exc.message}") from None
        if top:
            concrete.append(Ref(ref.name, ref.subject, row.version))
        if (ref.subject, row.version) in seen:
            continue
        seen.add((ref.subject, row.version))
        schema = schema_row(tenant_id, row.schema_id)
        texts.setdefault(ref.name, schema.schema_text)
        pending.extend((nested, False) for nested in references_of(tenant_id, schema.id))
    return concrete, texts


def registry_fingerprint(parsed: ParsedSchema, refs: Sequence[Ref]) -> str:
    """The dedup key of a schema row: the core fingerprint plus the references' names, subjects and versions."""
    digest = hashlib.sha256(parsed.fingerprint.encode("ascii"))
    digest.update(orjson.dumps([[r.name, r.subject, r.version] for r in refs]))
    return digest.hexdigest()


def parse_new(tenant_id: int, schema_type: Any, text: Any, refs: Sequence[Ref]) -> tuple[ParsedSchema, list[Ref]]:
    """Parse a schema sent by a client with its references resolved in the tenant; 42201 when invalid."""
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema("schema is required: a string holding the schema")
    if schema_type is not None and not isinstance(schema_type, str):
        raise errors.invalid_schema("schemaType must be a string")
    concrete, texts = resolve_refs(tenant_id, refs)
    try:
        return parse_schema(schema_type or "AVRO", text, texts), concrete
    except SchemaError as exc:
        raise errors.invalid_schema(str(exc)) from None


_lock = threading.Lock()


def app_cache(name: str) -> OrderedDict[Any, Any]:
    """A cache of the current app: ids and tenant ids are per database, and tests run several apps at once."""
    caches = current_app.extensions.setdefault("registry_caches", {})
    cache = caches.get(name)
    if cache is None:
        with _lock:
            cache = caches.setdefault(name, OrderedDict())
    return cache


def cache_put(cache: OrderedDict[Any, Any], key: Any, value: Any, size: int) -> None:
    """Store in an LRU-bounded cache."""
    with _lock:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)


def parsed_schema(row: RegistrySchema) -> ParsedSchema:
    """The parsed form of a stored schema, cached by id (a schema row never changes once written)."""
    parsed_cache = app_cache("parsed")
    hit = parsed_cache.get(row.id)
    if hit is not None:
        return hit
    _, texts = resolve_refs(row.tenant_id, references_of(row.tenant_id, row.id))
    try:
        parsed = parse_schema(row.schema_type, row.schema_text, texts)
    except SchemaError as exc:  # stored schemas parsed once already: only a core upgrade could get here
        logger.error("stored schema %s no longer parses: %s", row.id, exc)
        raise errors.RegistryError(errors.STORE_ERROR, f"stored schema {row.id} does not parse: {exc}") from None
    cache_put(parsed_cache, row.id, parsed, PARSED_CACHE_SIZE)
    return parsed


def forget_parsed(schema_ids: Sequence[int]) -> None:
    """Drop deleted schemas from the cache (ids are never reused, so this only frees memory)."""
    parsed_cache = app_cache("parsed")
    with _lock:
        for schema_id in schema_ids:
            parsed_cache.pop(schema_id, None)


def schema_json(row: RegistrySchema, refs: Sequence[Ref] | None = None) -> dict[str, Any]:
    """Confluent's schema object: ``schema``, plus ``schemaType`` unless AVRO and ``references`` when any."""
    out: dict[str, Any] = {}
    if row.schema_type != "AVRO":
        out["schemaType"] = row.schema_type
    refs = references_of(row.tenant_id, row.id) if refs is None else refs
    if refs:
        out["references"] = [r.to_json() for r in refs]
    out["schema"] = row.schema_text
    return out


def version_json(version: RegistrySubjectVersion, row: RegistrySchema) -> dict[str, Any]:
    """Confluent's subject-version object."""
    out: dict[str, Any] = {"subject": version.subject, "version": version.version, "id": row.id}
    out.update(schema_json(row))
    return out
