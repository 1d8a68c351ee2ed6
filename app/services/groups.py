"""Pull consumer groups over REST: fetch, commit, lag, list and reset (API.md "Consumer groups").

A group belongs to a tenant and is named ``<tenant slug>.<group>`` in the event log (slugs have no dots,
so the prefix is unambiguous). A group exists once it has committed; before that its lag view shows
``committed: null`` and counts the lag from the oldest event kept.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.bus.envelope import EnvelopeError, parse_rfc3339, record_to_json
from app.bus.log import PartitionLag
from app.extensions import db
from app.models import Stream
from app.security import Principal
from app.services import audit, metrics
from app.services.errors import BadRequest, Invalid
from app.services.event_log import event_log
from app.services.events_read import MAX_OFFSET, echo
from app.services.log_errors import log_errors
from app.services.pagination import decode_cursor, encode_cursor
from app.services.streams import get_stream
from app.services.validation import check_int, check_keys, check_name

logger = logging.getLogger(__name__)

DEFAULT_FETCH_MAX = 500
DEFAULT_WAIT_MS = 1000  # API.md's example body; a long poll returns as soon as there is something


def _group_id(principal: Principal, group: str) -> str:
    return f"{principal.tenant_slug}.{check_name(group, 'group')}"


def _log_name(principal: Principal, stream: Stream) -> str:
    return f"{principal.tenant_slug}.{stream.name}"


def _partitions(value: Any, stream: Stream) -> list[int] | None:
    """The ``partitions`` of a fetch: distinct partitions of the stream, or None for all."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > stream.partitions:
        raise Invalid("partitions must be a non-empty list of partition numbers", code="invalid_field",
                      details={"field": "partitions"})
    for p in value:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < stream.partitions:
            raise Invalid(f"stream {stream.name!r} has partitions 0..{stream.partitions - 1}",
                          code="invalid_partition", details={"partition": echo(p), "partitions": stream.partitions})
    return sorted(set(value))


def _offsets(value: Any, stream: Stream, field: str) -> dict[int, int]:
    """``[{"partition", "offset"}]`` as ``{partition: offset}``; 422 for bad partitions or offsets."""
    if not isinstance(value, list) or not value or len(value) > stream.partitions:
        raise Invalid(f"{field} must be a non-empty list of {{partition, offset}}", code="invalid_field",
                      details={"field": field})
    out: dict[int, int] = {}
    for item in value:
        if not isinstance(item, dict) or set(item) != {"partition", "offset"}:
            raise Invalid(f"each of {field} is {{partition, offset}}", code="invalid_field", details={"field": field})
        p, off = item["partition"], item["offset"]
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < stream.partitions or p in out:
            raise Invalid(f"stream {stream.name!r} has partitions 0..{stream.partitions - 1}, each given once",
                          code="invalid_partition", details={"partition": echo(p), "partitions": stream.partitions})
        if isinstance(off, bool) or not isinstance(off, int) or not 0 <= off <= MAX_OFFSET:
            raise Invalid("an offset is a non-negative integer, at most the partition's end", code="invalid_offset",
                          details={"partition": p, "offset": echo(off)})
        out[p] = off
    return out


def fetch(principal: Principal, stream_name: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
    """Events after the group's committed offsets; waits up to ``wait_ms`` when there are none."""
    stream = get_stream(principal, stream_name)
    gid, log_name = _group_id(principal, group), _log_name(principal, stream)
    check_keys(body, {"max", "wait_ms", "partitions"})
    config = current_app.config
    max_records = check_int(body.get("max", DEFAULT_FETCH_MAX), "max", 1, int(config["FETCH_MAX"]))
    wait_ms = check_int(body.get("wait_ms", DEFAULT_WAIT_MS), "wait_ms", 0, int(config["FETCH_MAX_WAIT_MS"]))
    partitions = _partitions(body.get("partitions"), stream)
    # A long poll must not hold a database connection (and, on PostgreSQL, an open transaction).
    db.session.close()
    with log_errors(stream_name):
        records = event_log().fetch(gid, log_name, max_records, wait_ms / 1000, partitions)
    metrics.fetched(principal.tenant_slug, stream_name, len(records))
    return {"items": [record_to_json(r) for r in records]}


def commit(principal: Principal, stream_name: str, group: str, body: dict[str, Any]) -> None:
    """Store the group's next offsets to read (Kafka semantics); 422 beyond a partition's end."""
    stream = get_stream(principal, stream_name)
    gid, log_name = _group_id(principal, group), _log_name(principal, stream)
    check_keys(body, {"offsets"})
    offsets = _offsets(body.get("offsets"), stream, "offsets")
    with log_errors(stream_name):
        event_log().commit(gid, log_name, offsets)  # the log refuses offsets beyond the end (InvalidOffset)


def _lag_view(group: str, stream_name: str, rows: list[PartitionLag]) -> dict[str, Any]:
    return {
        "group": group,
        "stream": stream_name,
        "lag": sum(r.lag for r in rows),
        "partitions": [{"partition": r.partition, "committed": r.committed, "end": r.end, "lag": r.lag}
                       for r in rows],
    }


def group_lag(principal: Principal, stream_name: str, group: str) -> dict[str, Any]:
    """The group's committed offset, end and lag for every partition of the stream."""
    stream = get_stream(principal, stream_name)
    gid, log_name = _group_id(principal, group), _log_name(principal, stream)
    with log_errors(stream_name):
        rows = event_log().lag(gid, log_name)
    return _lag_view(group, stream_name, rows)


def list_groups(principal: Principal, limit: int, cursor: str | None,
                stream_filter: str | None = None) -> dict[str, Any]:
    """The tenant's groups over all its streams (or one), by stream then group, each with its lag."""
    prefix = f"{principal.tenant_slug}."
    names = set(db.session.execute(select(Stream.name).where(Stream.tenant_id == principal.tenant_id)).scalars())
    log = event_log()
    with log_errors(stream_filter or "*"):
        pairs = log.groups(prefix + stream_filter if stream_filter else None)
    # Only this tenant's groups on its live streams: the log is shared by every tenant.
    mine = sorted(
        (s[len(prefix):], g[len(prefix):]) for g, s in pairs
        if g.startswith(prefix) and s.startswith(prefix) and s[len(prefix):] in names
    )
    state = decode_cursor(cursor)
    if state:
        after = state.get("after")
        if not (isinstance(after, list) and len(after) == 2 and all(isinstance(x, str) for x in after)):
            raise BadRequest("invalid cursor", code="invalid_cursor")
        mine = [pair for pair in mine if pair > (after[0], after[1])]
    page = mine[:limit]
    items = []
    for stream_name, group in page:
        with log_errors(stream_name):
            items.append(_lag_view(group, stream_name, log.lag(prefix + group, prefix + stream_name)))
    nxt = encode_cursor({"after": list(page[-1])}) if len(mine) > limit else None
    return {"items": items, "next": nxt}


def _reset_target(to: Any, stream: Stream) -> tuple[str | Mapping[str, object], Any]:
    """The log's ResetTarget for API.md's ``to``, and its JSON form for the audit record."""
    if to in ("earliest", "latest"):
        return to, to
    if isinstance(to, dict) and set(to) == {"time"}:
        try:
            when = parse_rfc3339(to["time"])
            return {"time": int(when.timestamp() * 1000)}, to
        except (EnvelopeError, OverflowError, ValueError) as exc:
            raise Invalid("to.time must be an RFC 3339 time with an offset", code="invalid_field",
                          details={"field": "to.time"}) from exc
    if isinstance(to, dict) and set(to) == {"offsets"}:
        return {"offsets": _offsets(to["offsets"], stream, "to.offsets")}, to
    raise Invalid('to must be "earliest", "latest", {"time": RFC 3339} or {"offsets": [{partition, offset}]}',
                  code="invalid_field", details={"field": "to"})


def reset(principal: Principal, stream_name: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
    """Move the group's offsets (audited with before and after); returns the group's new lag view."""
    stream = get_stream(principal, stream_name)
    gid, log_name = _group_id(principal, group), _log_name(principal, stream)
    check_keys(body, {"to"})
    target, shown = _reset_target(body.get("to"), stream)
    log = event_log()
    with log_errors(stream_name):
        before = log.committed(gid, log_name)
        after = log.reset(gid, log_name, target)
        rows = log.lag(gid, log_name)
    audit.record(principal, "group.reset", "group", f"{stream_name}/{group}", {
        "stream": stream_name,
        "group": group,
        "to": shown,
        "before": [{"partition": p, "offset": o} for p, o in sorted(before.items())],
        "after": [{"partition": p, "offset": o} for p, o in sorted(after.items())],
    })
    db.session.commit()
    logger.info("group %s on %s reset by %s", gid, log_name, principal.actor)
    return _lag_view(group, stream_name, rows)
