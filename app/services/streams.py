"""Stream use cases: create, list, show, change, delete. Metadata in the database, events in the log."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.bus.log import StreamExists, StreamNotFound
from app.extensions import db
from app.models import Stream
from app.security import Principal
from app.services import audit
from app.services.errors import Conflict, Invalid, NotFound
from app.services.event_log import event_log
from app.services.pagination import decode_cursor, encode_cursor
from app.services.validation import check_int, check_keys, check_name, check_optional_str

logger = logging.getLogger(__name__)

MAX_RETENTION_MS = 100 * 365 * 24 * 3600 * 1000
CREATE_FIELDS = {"name", "partitions", "retention_ms", "schema_subject", "description"}
PATCH_FIELDS = {"partitions", "retention_ms", "schema_subject", "description"}


def _max_partitions() -> int:
    return int(current_app.config["MAX_PARTITIONS"])


def _retention(value: Any) -> int | None:
    return None if value is None else check_int(value, "retention_ms", 1, MAX_RETENTION_MS)


def get_stream(principal: Principal, name: str) -> Stream:
    """The tenant's stream ``name``; 404 when absent or another tenant's."""
    stream = db.session.execute(
        select(Stream).where(Stream.tenant_id == principal.tenant_id, Stream.name == name)
    ).scalar_one_or_none()
    if stream is None:
        raise NotFound(f"no stream {name!r}", code="stream_not_found", details={"stream": name})
    return stream


@dataclass(frozen=True)
class StreamRef:
    """What the publish path needs of a stream, without an ORM object."""

    name: str
    log_name: str
    schema_subject: str | None


# The publish path looks its stream up on every request; a second of staleness across processes is
# harmless (a deleted stream's append fails in the log with 404 anyway) and saves a query per request.
STREAM_CACHE_TTL_S = 1.0
_CACHE_KEY = "stream_ref_cache"


def _ref_cache() -> dict[tuple[int, str], tuple[float, StreamRef]]:
    # Per app, not per process: tenant ids repeat across databases (tests run several apps at once).
    return current_app.extensions.setdefault(_CACHE_KEY, {})


def stream_ref(principal: Principal, name: str) -> StreamRef:
    """The tenant's stream ``name`` for publishing, cached for a second; 404 when absent."""
    key = (principal.tenant_id, name)
    now = time.monotonic()
    cache = _ref_cache()
    cached = cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    stream = get_stream(principal, name)
    ref = StreamRef(stream.name, f"{principal.tenant_slug}.{stream.name}", stream.schema_subject)
    if len(cache) > 10_000:
        cache.clear()
    cache[key] = (now + STREAM_CACHE_TTL_S, ref)
    return ref


def _forget(stream: Stream) -> None:
    _ref_cache().pop((stream.tenant_id, stream.name), None)


def list_streams(principal: Principal, limit: int, cursor: str | None) -> tuple[list[Stream], str | None]:
    """The tenant's streams by name, one page at a time."""
    state = decode_cursor(cursor)
    query = select(Stream).where(Stream.tenant_id == principal.tenant_id).order_by(Stream.name).limit(limit + 1)
    if state:
        query = query.where(Stream.name > str(state.get("after", "")))
    rows = list(db.session.execute(query).scalars())
    nxt = encode_cursor({"after": rows[limit - 1].name}) if len(rows) > limit else None
    return rows[:limit], nxt


def create_stream(principal: Principal, body: dict[str, Any]) -> Stream:
    """Create a stream in the tenant and in the event log (an existing topic of that name is adopted)."""
    check_keys(body, CREATE_FIELDS)
    name = check_name(body.get("name"))
    partitions = check_int(body.get("partitions", 3), "partitions", 1, _max_partitions())
    stream = Stream(
        tenant_id=principal.tenant_id,
        name=name,
        partitions=partitions,
        retention_ms=_retention(body.get("retention_ms")),
        schema_subject=check_optional_str(body.get("schema_subject"), "schema_subject", 255),
        description=check_optional_str(body.get("description"), "description", 10_000),
    )
    # The log is written before the metadata row is flushed: on SQLite the log shares the database
    # file, and a flushed row would hold the write lock the log's own transaction waits for.
    exists = db.session.execute(
        select(Stream.id).where(Stream.tenant_id == principal.tenant_id, Stream.name == name)
    ).first()
    if exists is not None:
        raise Conflict(f"stream {name!r} exists", code="stream_exists", details={"stream": name})
    log = event_log()
    log_name = f"{principal.tenant_slug}.{name}"
    try:
        log.create_stream(log_name, partitions, stream.retention_ms)
    except StreamExists:
        # A topic made by plain Kafka tools (or left by a crash before commit) is adopted as it is.
        info = log.stream_info(log_name)
        stream.partitions = info.partitions
        logger.info("adopted existing log stream %s", log_name)
    db.session.add(stream)
    try:
        db.session.flush()
    except IntegrityError as exc:  # a concurrent create of the same name won the race
        db.session.rollback()
        raise Conflict(f"stream {name!r} exists", code="stream_exists", details={"stream": name}) from exc
    audit.record(principal, "stream.create", "stream", name, {"partitions": stream.partitions})
    db.session.commit()
    return stream


def update_stream(principal: Principal, name: str, body: dict[str, Any]) -> Stream:
    """Change retention, description, schema subject, or grow partitions."""
    check_keys(body, PATCH_FIELDS)
    stream = get_stream(principal, name)
    changes: dict[str, Any] = {}
    log = event_log()
    if "partitions" in body:
        partitions = check_int(body["partitions"], "partitions", 1, _max_partitions())
        if partitions < stream.partitions:
            raise Invalid("partitions can only grow", code="partitions_shrink",
                          details={"field": "partitions", "current": stream.partitions})
        if partitions > stream.partitions:
            log.grow_partitions(stream.log_name, partitions)
            changes["partitions"] = [stream.partitions, partitions]
            stream.partitions = partitions
    if "retention_ms" in body:
        retention = _retention(body["retention_ms"])
        if retention != stream.retention_ms:
            log.set_retention(stream.log_name, retention)
            changes["retention_ms"] = [stream.retention_ms, retention]
            stream.retention_ms = retention
    for field, limit in (("description", 10_000), ("schema_subject", 255)):
        if field in body:
            value = check_optional_str(body[field], field, limit)
            if value != getattr(stream, field):
                changes[field] = [getattr(stream, field), value]
                setattr(stream, field, value)
    if changes:
        audit.record(principal, "stream.update", "stream", name, changes)
    db.session.commit()
    _forget(stream)
    return stream


def delete_stream(principal: Principal, name: str) -> None:
    """Delete a stream, its events and its groups."""
    stream = get_stream(principal, name)
    log_name = stream.log_name
    # Log first, for the same SQLite write-lock reason as in create_stream; a retry after a failed
    # commit finds the log stream gone and only removes the row.
    try:
        event_log().delete_stream(log_name)
    except StreamNotFound:
        logger.warning("log stream %s was already gone", log_name)
    db.session.delete(stream)
    audit.record(principal, "stream.delete", "stream", name)
    db.session.commit()
    _forget(stream)


def stream_to_json(stream: Stream, with_partitions: bool = False) -> dict[str, Any]:
    """The API's view of a stream; ``partitions`` detail reads the log's watermarks."""
    out: dict[str, Any] = {
        "id": stream.id,
        "name": stream.name,
        "partitions": stream.partitions,
        "retention_ms": stream.retention_ms,
        "schema_subject": stream.schema_subject,
        "description": stream.description,
        "created_at": stream.created_at,
        "updated_at": stream.updated_at,
    }
    if with_partitions:
        marks = event_log().watermarks(stream.log_name)
        out["partition_count"] = stream.partitions
        out["partitions"] = [{"partition": m.partition, "low": m.low, "high": m.high} for m in marks]
        out["events"] = sum(m.high - m.low for m in marks)
    return out
