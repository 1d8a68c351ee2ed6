"""Reading a stream's events: a filtered, paged list over one or all partitions, and one event by position.

``GET /streams/{name}/events`` parameters:

- ``partition``: read one partition (else all, interleaved fairly); ``offset``: where to start in it
  (needs ``partition``); ``from_time``: RFC 3339, start at the first event logged at/after it.
  Without either, reading starts at the oldest event kept.
- ``type``: the event type, or a shell-style glob of it (``order.*``; case-sensitive, whole type);
  ``key``: the partition key, exactly; ``q``: a substring of the event's data as stored (compact JSON
  text for JSON data, so it matches keys and values alike), case-insensitive for ASCII letters.
  Empty parameters count as absent.
- ``limit`` (1..1000, default 100) and ``cursor``: ``next`` of the previous page. A cursor carries the
  per-partition positions and the filters, so a client passes only ``cursor`` (and ``limit``) to go on.

Each page holds every partition's events in offset order, interleaved by log time. Filters are applied
while scanning, at most SCAN_BUDGET events a request, so a filtered page may hold fewer than ``limit``
items (even none) with a ``next`` to go on. ``next`` is null once every partition read was exhausted;
to follow new events later, use a consumer group, a subscription, or ``partition`` + ``offset``.
"""
from __future__ import annotations

import fnmatch
import heapq
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.bus.envelope import EnvelopeError, Record, parse_rfc3339, record_to_json
from app.bus.log import EventLog, InvalidOffset, InvalidPartition
from app.models import Stream
from app.security import Principal
from app.services.errors import BadRequest, Invalid, NotFound
from app.services.event_log import event_log
from app.services.log_errors import log_errors
from app.services.pagination import decode_cursor, encode_cursor, parse_limit
from app.services.streams import get_stream
from app.services.wire_format import decode_record

logger = logging.getLogger(__name__)

MAX_OFFSET = 2**63 - 1  # BIGINT / Kafka's int64
SCAN_BUDGET = 10_000  # events examined per request when filters are set
FILTER_CHUNK = 500  # events read at a time from one partition when filters are set
_INT_RE = re.compile(r"^-?[0-9]{1,20}$")
_FILTER_LIMITS = {"type": 256, "key": 1024, "q": 256}

Matcher = Callable[[Record], bool]


@dataclass(frozen=True)
class Filters:
    """What a list keeps: type (glob), key (exact), q (substring of data)."""

    type: str | None = None
    key: str | None = None
    q: str | None = None

    def matcher(self) -> Matcher | None:
        """A predicate over records, or None when nothing is filtered."""
        checks: list[Matcher] = []
        if self.type is not None:
            wanted = self.type
            if any(c in wanted for c in "*?["):
                pattern = re.compile(fnmatch.translate(wanted))
                checks.append(lambda r: pattern.match(r.event.type) is not None)
            else:
                checks.append(lambda r: r.event.type == wanted)
        if self.key is not None:
            key = self.key
            checks.append(lambda r: r.event.key == key)
        if self.q is not None:
            needle = self.q.lower().encode("utf-8")
            checks.append(lambda r: needle in r.event.data.lower())
        if not checks:
            return None
        return lambda r: all(check(r) for check in checks)


def echo(value: Any) -> Any:
    """A client's value made safe to echo in error details: JSON numbers stay within 64 bits, text stays short."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**64:
        return value
    if isinstance(value, (bool, float)) or value is None:
        return value
    return str(value)[:100]


def _parse_int(value: str, name: str) -> int:
    if not _INT_RE.match(value):
        raise BadRequest(f"{name} must be an integer", code="invalid_parameter", details={"param": name})
    return int(value)


def _param(args: Mapping[str, str], name: str) -> str | None:
    value = args.get(name)
    return value if value else None


def _filter_param(args: Mapping[str, str], name: str) -> str | None:
    value = _param(args, name)
    if value is not None and len(value) > _FILTER_LIMITS[name]:
        raise BadRequest(f"{name} is longer than {_FILTER_LIMITS[name]} characters", code="invalid_parameter",
                         details={"param": name})
    return value


def _time_ms(value: str, name: str) -> int:
    """RFC 3339 as epoch milliseconds (400 otherwise)."""
    try:
        return int(parse_rfc3339(value).timestamp() * 1000)
    except (EnvelopeError, OverflowError, ValueError) as exc:
        raise BadRequest(f"{name} must be an RFC 3339 time with an offset, like 2024-05-01T12:00:00Z",
                         code="invalid_parameter", details={"param": name}) from exc


def _check_partition(partition: int, stream: Stream) -> int:
    if not 0 <= partition < stream.partitions:
        raise Invalid(f"stream {stream.name!r} has partitions 0..{stream.partitions - 1}", code="invalid_partition",
                      details={"partition": echo(partition), "partitions": stream.partitions})
    return partition


def _start(log: EventLog, log_name: str, stream: Stream, args: Mapping[str, str]) -> dict[int, int]:
    """Start offset of every partition to read, from ``partition``, ``offset`` and ``from_time``."""
    part_s, offset_s, time_s = _param(args, "partition"), _param(args, "offset"), _param(args, "from_time")
    partition = None if part_s is None else _parse_int(part_s, "partition")
    offset = None if offset_s is None else _parse_int(offset_s, "offset")
    if offset is not None and not 0 <= offset <= MAX_OFFSET:
        raise BadRequest("offset must be a non-negative integer", code="invalid_parameter",
                         details={"param": "offset"})
    if offset is not None and partition is None:
        raise BadRequest("offset needs partition: offsets are per partition", code="invalid_parameter",
                         details={"param": "offset"})
    if offset is not None and time_s is not None:
        raise BadRequest("give offset or from_time, not both", code="invalid_parameter",
                         details={"param": "from_time"})
    time_ms = None if time_s is None else _time_ms(time_s, "from_time")
    if partition is not None:
        _check_partition(partition, stream)
    parts = range(stream.partitions) if partition is None else [partition]
    with log_errors(stream.name):
        if time_ms is not None:
            return {p: log.offset_for_time(log_name, p, time_ms) for p in parts}
        marks = {m.partition: m for m in log.watermarks(log_name)}
    if offset is not None:
        high = marks[partition].high  # type: ignore[index]
        if offset > high:
            raise Invalid(f"offset {offset} is beyond the end of partition {partition} ({high})",
                          code="invalid_offset", details={"partition": partition, "offset": offset, "high": high})
        return {partition: offset}  # type: ignore[dict-item]
    return {p: marks[p].low if p in marks else 0 for p in parts}


def _from_cursor(cursor: str, stream: Stream) -> tuple[dict[int, int], Filters]:
    """Positions and filters inside a cursor of ours (400 for anything else)."""
    state = decode_cursor(cursor) or {}
    positions, filters = state.get("o"), {k: state.get(k) for k in ("type", "key", "q")}
    try:
        if not isinstance(positions, dict) or not positions:
            raise ValueError("no positions")
        out = {int(p): o for p, o in positions.items()}
        for p, o in out.items():
            if not 0 <= p < stream.partitions or isinstance(o, bool) or not isinstance(o, int) \
                    or not 0 <= o <= MAX_OFFSET:
                raise ValueError("bad position")
        if any(v is not None and not isinstance(v, str) for v in filters.values()):
            raise ValueError("bad filter")
    except ValueError as exc:
        raise BadRequest("invalid cursor", code="invalid_cursor") from exc
    return out, Filters(**filters)


def _scan(log: EventLog, log_name: str, positions: dict[int, int], limit: int,
          match: Matcher | None) -> tuple[dict[int, list[Record]], dict[int, int], list[int]]:
    """Take up to ``limit`` matching records, a fair share from each partition per round.

    Returns the records per partition, the next position of every partition, and the partitions not yet
    exhausted. A partition that runs dry gives its share to the others in the next round.
    """
    pos = dict(positions)
    taken: dict[int, list[Record]] = {p: [] for p in pos}
    active = sorted(pos)
    remaining, budget = limit, SCAN_BUDGET
    while active and remaining > 0 and budget > 0:
        quota = -(-remaining // len(active))
        for p in list(active):
            want = min(quota, remaining)
            chunk = want if match is None else min(max(want, FILTER_CHUNK), budget)
            if want <= 0 or chunk <= 0:
                break
            batch = log.read(log_name, p, from_offset=pos[p], limit=chunk)
            budget -= len(batch)
            got, consumed = 0, 0
            for record in batch:
                consumed += 1
                pos[p] = record.offset + 1
                if match is None or match(record):
                    taken[p].append(record)
                    got += 1
                    if got == want:
                        break
            remaining -= got
            if len(batch) < chunk and consumed == len(batch):
                active.remove(p)
    return taken, pos, active


def list_events(principal: Principal, stream_name: str, args: Mapping[str, str]) -> dict[str, Any]:
    """A page of a stream's events: ``{"items": [...], "next": cursor or null}``."""
    stream = get_stream(principal, stream_name)
    log_name = f"{principal.tenant_slug}.{stream.name}"
    limit = parse_limit(args.get("limit"))
    log = event_log()
    cursor = _param(args, "cursor")
    if cursor is not None:
        positions, filters = _from_cursor(cursor, stream)
    else:
        filters = Filters(_filter_param(args, "type"), _filter_param(args, "key"), _filter_param(args, "q"))
        positions = _start(log, log_name, stream, args)
    with log_errors(stream_name):
        taken, positions, active = _scan(log, log_name, positions, limit, filters.matcher())
    # heapq.merge never reorders within one input, so every partition stays in offset order.
    merged = heapq.merge(*(taken[p] for p in sorted(taken)), key=lambda r: r.timestamp_ms)
    items = [record_to_json(decode_record(principal.tenant_id, r)) for r in merged]
    nxt = None
    if active:
        state: dict[str, Any] = {"o": {str(p): o for p, o in sorted(positions.items())}}
        state.update({k: v for k, v in vars(filters).items() if v is not None})
        nxt = encode_cursor(state)
    return {"items": items, "next": nxt}


def get_event(principal: Principal, stream_name: str, partition_s: str, offset_s: str) -> dict[str, Any]:
    """One event by position; 404 ``event_not_found`` outside the log (or dropped by retention)."""
    stream = get_stream(principal, stream_name)
    partition, offset = _parse_int(partition_s, "partition"), _parse_int(offset_s, "offset")
    missing = NotFound(f"no event at partition {partition}, offset {offset}", code="event_not_found",
                       details={"stream": stream_name, "partition": echo(partition), "offset": echo(offset)})
    if not 0 <= partition < stream.partitions or not 0 <= offset <= MAX_OFFSET:
        raise missing
    with log_errors(stream_name):
        try:
            records = event_log().read(f"{principal.tenant_slug}.{stream.name}", partition, from_offset=offset,
                                       limit=1)
        except (InvalidOffset, InvalidPartition):
            raise missing from None
    # Below the low watermark the log answers from the first event kept: that is not the one asked for.
    if not records or records[0].offset != offset:
        raise missing
    return record_to_json(decode_record(principal.tenant_id, records[0]))
