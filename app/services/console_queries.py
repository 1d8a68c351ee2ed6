"""Console read helpers missing from the services: a page of streams or groups with their figures, in bulk.

A console page shows a page of streams (with watermarks and throughput) or of consumer groups (with lag per
partition). Asking the log stream by stream or group by group would cost a query per row (N+1). When the
event log is the SQL backend in the application database (``EVENT_LOG_URL=sql``, the default) these helpers
read the log's tables in a constant number of queries per page, whatever its size. On Kafka, or a SQL log in
another database, they fall back to the EventLog protocol: one admin round trip per stream or group shown
(Kafka has no cheaper way; pages are kept small).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from flask import current_app
from sqlalchemy import String, and_, func, literal, or_, select

from app.bus.envelope import EnvelopeError, parse_rfc3339
from app.bus.log.sql_schema import events, group_offsets, log_partitions, log_streams
from app.extensions import db
from app.models import Delivery, Stream, Subscription
from app.models.delivery import DEAD
from app.security import Principal
from app.services import dead_letters, groups, streams
from app.services.errors import BadRequest, Invalid
from app.services.event_log import event_log
from app.services.log_errors import log_errors
from app.services.pagination import decode_cursor, encode_cursor
from app.services.validation import check_name
from app.services.windows import parse_time

logger = logging.getLogger(__name__)

THROUGHPUT_WINDOW_MS = 60_000  # throughput is the events logged in the last minute, per second
SUBSCRIPTION_GROUP_PREFIX = "__sub."  # the log groups through which subscriptions read (not resettable here)
COUNT_CAP = 10_000  # "10,000+": an exact count of 100,000 dead letters on every page view buys nothing

_lp, _ls, _ev, _go = log_partitions.c, log_streams.c, events.c, group_offsets.c


def _log_in_app_db() -> bool:
    # Only then are the log's tables reachable through db.session (same database, same transaction).
    return current_app.config.get("EVENT_LOG_URL", "sql") == "sql"


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- streams ------------------------------------------------------------------------------------------------

def partition_stats(principal: Principal, names: list[str]) -> dict[str, list[dict[str, int]]]:
    """Per stream name: ``[{partition, low, high, events, recent}]``; ``recent`` = events of the last minute."""
    if not names:
        return {}
    prefix = f"{principal.tenant_slug}."
    cutoff = _now_ms() - THROUGHPUT_WINDOW_MS
    out: dict[str, list[dict[str, int]]] = {name: [] for name in names}
    if _log_in_app_db():
        # The first offset logged inside the window, found per partition by the (stream, partition, ts) index.
        first_recent = (
            select(_ev.offset)
            .where(_ev.stream_id == _lp.stream_id, _ev.partition == _lp.partition, _ev.ts_ms >= cutoff)
            .order_by(_ev.ts_ms, _ev.offset).limit(1)
            .correlate(log_partitions).scalar_subquery()
        )
        query = (select(_ls.name, _lp.partition, _lp.low, _lp.next_offset, first_recent)
                 .join_from(log_partitions, log_streams, _ls.id == _lp.stream_id)
                 .where(_ls.name.in_([prefix + n for n in names]))
                 .order_by(_ls.name, _lp.partition))
        for log_name, partition, low, high, recent_from in db.session.execute(query):
            recent = 0 if recent_from is None else high - recent_from
            out[log_name[len(prefix):]].append(
                {"partition": partition, "low": low, "high": high, "events": high - low, "recent": recent})
        return out
    log = event_log()
    for name in names:
        with log_errors(name):
            for mark in log.watermarks(prefix + name):
                since = log.offset_for_time(prefix + name, mark.partition, cutoff)
                out[name].append({"partition": mark.partition, "low": mark.low, "high": mark.high,
                                  "events": mark.high - mark.low, "recent": mark.high - since})
    return out


def _with_stats(row: dict[str, Any], parts: list[dict[str, int]]) -> dict[str, Any]:
    row["partition_stats"] = parts
    row["events"] = sum(p["events"] for p in parts)
    row["throughput"] = round(sum(p["recent"] for p in parts) * 1000 / THROUGHPUT_WINDOW_MS, 2)
    return row


def stream_page(principal: Principal, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the tenant's streams with size (events kept) and throughput (events/s, last minute)."""
    items, nxt = streams.list_streams(principal, limit, cursor)
    stats = partition_stats(principal, [s.name for s in items])
    return [_with_stats(streams.stream_to_json(s), stats[s.name]) for s in items], nxt


def stream_detail(principal: Principal, name: str) -> dict[str, Any]:
    """One stream with its partitions: low and high offsets, events kept, events of the last minute."""
    stream = streams.get_stream(principal, name)
    return _with_stats(streams.stream_to_json(stream), partition_stats(principal, [stream.name])[stream.name])


def stream_names(principal: Principal, limit: int = 1000) -> list[str]:
    """The tenant's stream names, for pickers (one query)."""
    return list(db.session.execute(select(Stream.name).where(Stream.tenant_id == principal.tenant_id)
                                   .order_by(Stream.name).limit(limit)).scalars())


# -- consumer groups ----------------------------------------------------------------------------------------

def _group_pairs(principal: Principal, limit: int, cursor: str | None,
                 stream_filter: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """A keyset page of (stream, group) of the tenant's live streams, by stream then group (one query)."""
    prefix = f"{principal.tenant_slug}."
    # Joined with the tenant's streams: the log is shared by every tenant, the metadata row proves ownership.
    query = (select(Stream.name, _go.group_name).distinct()
             .join_from(group_offsets, log_streams, _ls.id == _go.stream_id)
             .join(Stream, and_(Stream.tenant_id == principal.tenant_id,
                                _ls.name == literal(prefix, String) + Stream.name))
             .where(_go.group_name.startswith(prefix, autoescape=True)))
    if stream_filter:
        query = query.where(Stream.name == stream_filter)
    state = decode_cursor(cursor)
    if state:
        after = state.get("after")
        if not (isinstance(after, list) and len(after) == 2 and all(isinstance(x, str) for x in after)):
            raise BadRequest("invalid cursor", code="invalid_cursor")
        query = query.where(or_(Stream.name > after[0],
                                and_(Stream.name == after[0], _go.group_name > prefix + after[1])))
    rows = db.session.execute(query.order_by(Stream.name, _go.group_name).limit(limit + 1)).all()
    pairs = [(s, g[len(prefix):]) for s, g in rows]
    nxt = encode_cursor({"after": list(pairs[limit - 1])}) if len(pairs) > limit else None
    return pairs[:limit], nxt


def _lag_rows(principal: Principal, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Committed, end and lag per partition of every (stream, group), in two queries."""
    prefix = f"{principal.tenant_slug}."
    log_names = sorted({prefix + s for s, _ in pairs})
    group_names = sorted({prefix + g for _, g in pairs})
    marks: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for name, partition, low, high in db.session.execute(
            select(_ls.name, _lp.partition, _lp.low, _lp.next_offset)
            .join_from(log_partitions, log_streams, _ls.id == _lp.stream_id)
            .where(_ls.name.in_(log_names)).order_by(_ls.name, _lp.partition)):
        marks[name].append((partition, low, high))
    committed: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for group, name, partition, offset in db.session.execute(
            select(_go.group_name, _ls.name, _go.partition, _go.offset)
            .join_from(group_offsets, log_streams, _ls.id == _go.stream_id)
            .where(_go.group_name.in_(group_names), _ls.name.in_(log_names))):
        committed[(name, group)][partition] = offset
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for stream, group in pairs:
        offsets = committed.get((prefix + stream, prefix + group), {})
        # The SQL log's own rule: a partition never committed lags from its low watermark.
        out[(stream, group)] = [
            {"partition": p, "committed": offsets.get(p), "end": high,
             "lag": high - (low if offsets.get(p) is None else offsets[p])}
            for p, low, high in marks.get(prefix + stream, [])
        ]
    return out


def group_page(principal: Principal, limit: int, cursor: str | None,
               stream_filter: str | None = None) -> dict[str, Any]:
    """The tenant's consumer groups by stream then group, each with its lag per partition: ``{items, next}``."""
    if not _log_in_app_db():
        page = groups.list_groups(principal, limit, cursor, stream_filter)
    else:
        pairs, nxt = _group_pairs(principal, limit, cursor, stream_filter)
        lags = _lag_rows(principal, pairs)
        page = {"items": [{"group": g, "stream": s, "lag": sum(r["lag"] for r in lags[(s, g)]),
                           "partitions": lags[(s, g)]} for s, g in pairs], "next": nxt}
    for item in page["items"]:
        item["subscription"] = item["group"].startswith(SUBSCRIPTION_GROUP_PREFIX)
    return page


def _preview_targets(to: Any, log_name: str, marks: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Where a reset to ``to`` (the API's shape) would move each partition, computed as the log does."""
    log = event_log()
    if to == "earliest":
        return {p: low for p, (low, _) in marks.items()}
    if to == "latest":
        return {p: high for p, (_, high) in marks.items()}
    if isinstance(to, dict) and set(to) == {"time"}:
        try:
            at_ms = int(parse_rfc3339(to["time"]).timestamp() * 1000)
        except (EnvelopeError, OverflowError, ValueError, TypeError) as exc:
            raise Invalid("the time must be an RFC 3339 time, like 2024-05-01T12:00:00Z", code="invalid_field",
                          details={"field": "to.time"}) from exc
        return {p: log.offset_for_time(log_name, p, at_ms) for p in marks}
    if isinstance(to, dict) and set(to) == {"offsets"} and to["offsets"]:
        out: dict[int, int] = {}
        for item in to["offsets"]:
            p, offset = item["partition"], item["offset"]
            if p not in marks or not 0 <= offset <= marks[p][1]:
                raise Invalid(f"partition {p}: an offset is between 0 and the partition's end",
                              code="invalid_offset", details={"partition": p, "offset": offset})
            out[p] = offset
        return out
    raise Invalid("choose earliest, latest, a time, or offsets for at least one partition", code="invalid_field",
                  details={"field": "to"})


def reset_preview(principal: Principal, stream_name: str, group: str, to: Any) -> list[dict[str, Any]]:
    """What a reset would change, per partition: committed offset and lag before and after; changes nothing."""
    stream = streams.get_stream(principal, stream_name)
    gid = f"{principal.tenant_slug}.{check_name(group, 'group')}"
    log_name = f"{principal.tenant_slug}.{stream.name}"
    log = event_log()
    with log_errors(stream_name):
        marks = {m.partition: (m.low, m.high) for m in log.watermarks(log_name)}
        before = log.committed(gid, log_name)
        after = _preview_targets(to, log_name, marks)
    rows = []
    for p, (low, high) in sorted(marks.items()):
        old, new = before.get(p), after.get(p, before.get(p))
        rows.append({"partition": p, "low": low, "high": high, "before": old, "after": new,
                     "changed": p in after and new != old,
                     "lag_before": high - (low if old is None else old),
                     "lag_after": high - (low if new is None else new)})
    return rows


# -- subscriptions and dead letters -------------------------------------------------------------------------

def dead_letter_counts(principal: Principal, subscription_ids: list[str]) -> dict[str, int]:
    """Dead letters per subscription of a page, each counted up to COUNT_CAP + 1 (more: shown "10000+"); one query.

    Capped like the dead-letter list's count: an exact count of 100,000 dead letters of one subscription would
    cost every view of the subscriptions page a scan of them all.
    """
    if not subscription_ids:
        return {}
    sub = Subscription.__table__.alias("sub")
    # By subscription only (the outer query keeps to the tenant's subscriptions), in the order of the
    # (subscription_id, created_at) index: each subscription walks its own index range and stops at the cap.
    # Without the order, a LIMIT tempts the planner into scanning every dead letter by status for each
    # subscription of the page, however few are its own.
    capped = (select(Delivery.id)
              .where(Delivery.subscription_id == sub.c.id, Delivery.status == DEAD)
              .order_by(Delivery.subscription_id, Delivery.created_at)
              .limit(COUNT_CAP + 1).correlate(sub).subquery())
    count = select(func.count()).select_from(capped).scalar_subquery()
    rows = db.session.execute(select(sub.c.id, count)
                              .where(sub.c.tenant_id == principal.tenant_id, sub.c.id.in_(subscription_ids)))
    return {sub_id: n for sub_id, n in rows if n}


def count_dead_letters(principal: Principal, subscription: str | None, since: str | None,
                       until: str | None) -> tuple[int, bool]:
    """How many dead letters match the list's filters, counted up to COUNT_CAP: ``(count, capped)``."""
    start, end = parse_time(since, "since", param=True), parse_time(until, "until", param=True)
    inner = (dead_letters.dead_letter_query(principal.tenant_id, subscription, start, end)
             .with_only_columns(Delivery.id).limit(COUNT_CAP + 1).subquery())
    count = db.session.execute(select(func.count()).select_from(inner)).scalar_one()
    return min(count, COUNT_CAP), count > COUNT_CAP


def subscription_labels(principal: Principal, ids: list[str] | None = None,
                        limit: int = 500) -> dict[str, dict[str, str]]:
    """``{id: {"url", "stream"}}`` of the given subscriptions (or the tenant's first ``limit``), one query."""
    query = (select(Subscription.id, Subscription.url, Stream.name)
             .join(Stream, Stream.id == Subscription.stream_id)
             .where(Subscription.tenant_id == principal.tenant_id))
    if ids is not None:
        if not ids:
            return {}
        query = query.where(Subscription.id.in_(ids))
    rows = db.session.execute(query.order_by(Subscription.created_at, Subscription.id).limit(limit))
    return {sub_id: {"url": url, "stream": stream} for sub_id, url, stream in rows}
