"""Live tails of a stream: what the Socket.IO ``/live`` namespace and the GraphQL ``events`` subscription serve.

A tail belongs to one principal (tenant-scoped, needs READ), one stream, a start (``"latest"``,
``"earliest"``, an offset applied to every partition unless ``partition`` is given, or a mapping
partition -> offset) and optional filters (type glob, key, data substring ``q``, CEL expression — the
same rules as the event browser). Events come out as the REST API's event JSON (``record_to_json``
shape incl. ``partition`` and ``offset``). A tail's buffer is bounded: when the consumer is too slow the
oldest undelivered events are dropped and the next batch says so in ``missed`` (per partition: the first
offset dropped and how many), so the client can resume from an offset. Tails work across processes: an
event published through any web process reaches tails in every process.

How: ``live_reader`` (one reader thread per stream with tails, reading the event log), ``live_tail``
(the bounded buffer), ``live_wake`` (Redis pub/sub between processes). ``published`` is the publish
path's hook.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import current_app

from app.bus.log import Watermark
from app.security import READ, Principal
from app.services.errors import BadRequest, Invalid
from app.services.event_browser import criteria_from
from app.services.event_log import event_log
from app.services.events_read import MAX_OFFSET, echo
from app.services.live_reader import hub_of
from app.services.live_tail import DEFAULT_BATCH, DEFAULT_BUFFER, Missed, Tail, TailBatch
from app.services.log_errors import log_errors
from app.services.streams import get_stream

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH", "DEFAULT_BUFFER", "MAX_BUFFER", "Missed", "Tail", "TailBatch", "ends", "open_tail",
           "published"]

MAX_BUFFER = 100_000
LATEST, EARLIEST = "latest", "earliest"
Start = str | int | Mapping[int, int]


def open_tail(principal: Principal, stream: str, start: Start = LATEST, *, partition: int | None = None,
              event_type: str | None = None, key: str | None = None, expression: str | None = None,
              buffer: int = DEFAULT_BUFFER, q: str | None = None) -> Tail:
    """Open a tail; raises the services' NotFound / Invalid / Forbidden like the REST reads do.

    ``start``: ``"latest"`` (what is appended from now on), ``"earliest"`` (everything kept), an offset
    (every partition, or ``partition`` only; past a partition's end means its end), or ``{partition:
    offset}`` (exactly those partitions — how a client resumes after ``missed``). ``tail.starts`` holds
    the resulting position of every partition followed.
    """
    principal.require(READ)
    record = get_stream(principal, stream)
    criteria = criteria_from({"type": event_type or "", "key": key or "", "q": q or "", "expr": expression or ""})
    match = criteria.matcher()
    if partition is not None:
        _check_partition(partition, record.partitions)
    log_name = f"{principal.tenant_slug}.{record.name}"
    with log_errors(stream):
        marks = event_log().watermarks(log_name)
    positions = start_positions(start, partition, {m.partition: m for m in marks}, record.partitions)
    size = max(1, min(int(buffer), MAX_BUFFER))
    follow_all = partition is None and not isinstance(start, Mapping)
    return hub_of(current_app._get_current_object()).attach(  # type: ignore[attr-defined]
        log_name, principal.tenant_id, marks,
        lambda on_room, on_close: Tail(record.name, positions, match, size, follow_all, on_room, on_close, log_name))


def ends(tail: Tail) -> dict[int, int]:
    """The end of the log now (high watermarks) in the partitions ``tail`` started in."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    with log_errors(tail.stream):
        marks = {m.partition: m.high for m in hub_of(app).log.watermarks(tail.log_name)}
    return {p: marks.get(p, o) for p, o in tail.starts.items()}


def published(log_name: str) -> None:
    """The publish path's hook after a durable append: wake the readers of ``log_name`` in every process."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    hub = app.extensions.get("live_feed")
    if hub is None and not app.config.get("REDIS_URL"):
        return  # no tail here, and no other process to tell: nothing to do
    hub_of(app).published(log_name)


def _check_partition(partition: object, partitions: int) -> int:
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < partitions:
        raise Invalid(f"the stream has partitions 0..{partitions - 1}", code="invalid_partition",
                      details={"partition": echo(partition), "partitions": partitions})
    return partition


def _check_offset(offset: object) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise BadRequest('from must be "latest", "earliest", a non-negative offset or {partition: offset}',
                         code="invalid_parameter", details={"param": "from", "value": echo(offset)})
    return offset


def start_positions(start: Start, partition: int | None, marks: Mapping[int, Watermark],
                    partitions: int) -> dict[int, int]:
    """The first offset to deliver in every partition followed (400/422 for a bad start)."""
    def mark(p: int) -> Watermark:
        return marks.get(p) or Watermark(p, 0, 0)

    if isinstance(start, Mapping):
        if partition is not None:
            raise BadRequest("give partition or a map of offsets in from, not both", code="invalid_parameter",
                             details={"param": "partition"})
        if not start:
            raise BadRequest("from needs at least one partition", code="invalid_parameter", details={"param": "from"})
        out: dict[int, int] = {}
        for p, offset in start.items():
            part = _check_partition(_as_int(p), partitions)
            out[part] = _beyond_end_check(part, _check_offset(offset), mark(part))
        return out
    parts = range(partitions) if partition is None else [partition]
    if start == LATEST:
        return {p: mark(p).high for p in parts}
    if start == EARLIEST:
        return {p: mark(p).low for p in parts}
    offset = _check_offset(start)
    if partition is not None:
        return {partition: _beyond_end_check(partition, offset, mark(partition))}
    # One offset for every partition: each starts there, or at its end when it has fewer events.
    return {p: min(offset, mark(p).high) for p in parts}


def _as_int(value: object) -> int:
    if isinstance(value, str) and value.isdigit():
        return int(value)  # JSON object keys are strings
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadRequest("from maps partitions to offsets", code="invalid_parameter", details={"param": "from"})


def _beyond_end_check(partition: int, offset: int, mark: Watermark) -> int:
    if offset > mark.high:
        raise Invalid(f"offset {offset} is beyond the end of partition {partition} ({mark.high})",
                      code="invalid_offset", details={"partition": partition, "offset": offset, "high": mark.high})
    return offset
