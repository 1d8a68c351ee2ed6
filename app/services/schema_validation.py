"""Publish-time validation of events against the schema subject their stream is bound to.

Per request: one cache look-up of the subject's latest version (a database read at most every
``LATEST_TTL_S`` seconds per subject and process). Per event: one compiled validator call (validators
are compiled once per schema by ``validator_for`` and cached). Streams without a subject never get here.

An event's ``dataschema`` may name the version to validate against, as a path ending in
``/subjects/{subject}/versions/{version}`` or ``/schemas/ids/{id}`` (a registry URL works); any other
value means the latest version. Data in Confluent's wire format (``data_base64`` holding magic byte 0,
the schema id and the payload) is decoded with the schema it names, which must be a version of the subject.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from sqlalchemy import select

from app.bus.envelope import JSON_CONTENT_TYPE, Event
from app.bus.registry import ParsedSchema, ValidationFailed, avro_decode, decode_wire, validator_for
from app.bus.registry.validators import Validator
from app.extensions import db
from app.models.schema import RegistrySubjectVersion
from app.services import registry_errors as errors
from app.services import registry_store as store
from app.services.errors import Invalid

logger = logging.getLogger(__name__)

LATEST_TTL_S = 5.0
CACHE_SIZE = 4096
_IDS_RE = re.compile(r"/schemas/ids/([0-9]{1,10})/?$")
_VERSIONS_RE = re.compile(r"/subjects/([^/]+)/versions/([^/]+)/?$")


@dataclass(frozen=True)
class Target:
    """A version of a subject, ready to validate against."""

    subject: str
    version: int
    schema_id: int
    parsed: ParsedSchema
    validator: Validator


def forget_subject(tenant_id: int, subject: str) -> None:
    """Drop a subject's cached versions in this process (called when it is registered to or deleted from)."""
    cache = store.app_cache("targets")
    for key in [k for k in list(cache) if k[0] == tenant_id and k[1] == subject]:
        cache.pop(key, None)


def _cached(tenant_id: int, subject: str, which: str) -> Target | None:
    """The version ``which`` (``latest``, ``v:<n>`` or ``id:<n>``) of a subject, cached for LATEST_TTL_S."""
    cache = store.app_cache("targets")
    key = (tenant_id, subject, which)
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    target = _load(tenant_id, subject, which)
    store.cache_put(cache, key, (now + LATEST_TTL_S, target), CACHE_SIZE)
    return target


def _load(tenant_id: int, subject: str, which: str) -> Target | None:
    if which.startswith("id:"):
        sv = RegistrySubjectVersion
        version = db.session.execute(select(sv.version).where(
            sv.tenant_id == tenant_id, sv.subject == subject, sv.schema_id == int(which[3:]),
            sv.deleted.is_(False)).order_by(sv.version.desc()).limit(1)).scalar_one_or_none()
        if version is None:
            return None
        which = f"v:{version}"
    try:
        row = store.get_version(tenant_id, subject, "latest" if which == "latest" else which[2:])
    except errors.RegistryError:
        return None
    schema = store.schema_row(tenant_id, row.schema_id)
    parsed = store.parsed_schema(schema)
    return Target(subject, row.version, schema.id, parsed, validator_for(parsed))


def _named(subject: str, dataschema: str) -> str | None:
    """Which version an event's dataschema names (None: not a registry reference, use the latest)."""
    found = _IDS_RE.search(dataschema)
    if found:
        return f"id:{int(found.group(1))}"
    found = _VERSIONS_RE.search(dataschema)
    if found is None:
        return None
    named_subject, version = unquote(found.group(1)), unquote(found.group(2))
    if named_subject != subject:
        raise ValueError(f"dataschema names subject '{named_subject}' but the stream is bound to '{subject}'")
    number = store.parse_version(version) if version not in ("latest", "-1") else None
    return "latest" if number is None else f"v:{number}"


def _invalid(index: int, message: str, path: str | None = None, target: Target | None = None) -> Invalid:
    details: dict[str, Any] = {"index": index, "field": "data", "path": path}
    if target is not None:
        details.update(subject=target.subject, version=target.version, id=target.schema_id)
    return Invalid(f"event {index}: {message}", code="schema_violation", details=details)


def validate_batch(tenant_id: int, subject: str, events: Sequence[Event], raw: Sequence[Any] | None = None) -> None:
    """Check every event's data against the subject (422 naming the first bad event's index and path).

    ``raw``: the request's event objects, same order; their already-parsed ``data`` spares a second parse.
    """
    latest = _cached(tenant_id, subject, "latest")
    objs: Sequence[Any] = raw if raw is not None else [None] * len(events)
    # why this shape: the loop is the per-event hot path, so the common case (latest version, JSON data
    # already parsed by the request) takes no function call besides the validator's
    for index, (event, obj) in enumerate(zip(events, objs, strict=True)):
        target = latest if event.dataschema is None else _named_target(tenant_id, subject, index, event)
        if target is None:
            raise _invalid(index, f"subject '{subject}' has no schema registered: register one first")
        if obj is not None and "data" in obj and (event.datacontenttype == JSON_CONTENT_TYPE or event.is_json):
            datum = obj["data"]  # the value event.data was encoded from: the same JSON
        else:
            datum, target = _datum(tenant_id, index, event, target)
        try:
            target.validator(datum)
        except ValidationFailed as exc:
            raise _invalid(index, f"data does not match subject '{subject}' version {target.version} at "
                                  f"{exc.path}: {exc.message}", exc.path, target) from None


def _named_target(tenant_id: int, subject: str, index: int, event: Event) -> Target | None:
    """The version an event's dataschema names (the latest when it names none); 422 when it names a bad one."""
    dataschema = event.dataschema or ""
    try:
        which = _named(subject, dataschema)
    except (ValueError, errors.RegistryError) as exc:
        raise _invalid(index, f"dataschema: {getattr(exc, 'message', exc)}") from None
    if which is None or which == "latest":
        return _cached(tenant_id, subject, "latest")
    target = _cached(tenant_id, subject, which)
    if target is None:
        raise _invalid(index, f"dataschema {dataschema!r} names no live version of subject '{subject}'")
    return target


def _datum(tenant_id: int, index: int, event: Event, target: Target) -> tuple[Any, Target]:
    """The event's data as a JSON value and the version to check it with (wire format: the version it names)."""
    data = event.data
    if event.is_json:
        return orjson.loads(data), target  # valid JSON: the envelope check encoded it
    framed = decode_wire(data)
    if framed is None:
        raise _invalid(index, "data must be JSON or in Confluent's wire format for a stream with a schema",
                       "$", target)
    schema_id, payload = framed
    wire_target = target if schema_id == target.schema_id else _cached(tenant_id, target.subject, f"id:{schema_id}")
    if wire_target is None:
        raise _invalid(index, f"schema id {schema_id} in the data is not a live version of subject "
                              f"'{target.subject}'", "$", target)
    try:
        if wire_target.parsed.schema_type == "AVRO":
            return avro_decode(wire_target.parsed, payload), wire_target
        if wire_target.parsed.schema_type == "JSON":
            return orjson.loads(payload), wire_target
    except Exception as exc:  # noqa: BLE001 (any decoder failure is the client's bad data)
        raise _invalid(index, f"data does not decode with schema id {schema_id}: {exc}", "$", wire_target) from None
    raise _invalid(index, f"{wire_target.parsed.schema_type} data is not validated on publish", "$", wire_target)
