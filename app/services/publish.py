"""Publishing: validate a request's events, all or nothing, then append them in one call to the event log.

This is the hot path. Per request: one stream look-up and one append (plus the Idempotency-Key record
when the header is sent). Per event: the envelope check and a few C-speed byte scans, nothing else: no
database work and no audit record (publishing is data plane; it is counted in metrics instead).
"""
from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import current_app

from app.bus.envelope import EnvelopeError, Event, event_from_json
from app.security import Principal
from app.services import idempotency, live_feed, metrics, schema_validation
from app.services.errors import Invalid, TooLarge
from app.services.event_log import event_log
from app.services.log_errors import log_errors
from app.services.streams import stream_ref

logger = logging.getLogger(__name__)

def publish_events(principal: Principal, stream_name: str, body: Any,
                   idempotency_key: str | None = None) -> tuple[int, dict[str, Any]]:
    """Append one event or a batch (``{"events": [...]}`` or a JSON array) to a stream; 201 with positions."""
    stream = stream_ref(principal, stream_name)
    log_name = stream.log_name
    config = current_app.config
    events = validate_events(body, int(config["MAX_BATCH_EVENTS"]), int(config["MAX_JSON_DEPTH"]))
    if stream.schema_subject:  # streams without a subject pay this one test and nothing else
        schema_validation.validate_batch(principal.tenant_id, stream.schema_subject, events,
                                         raw_events(body, int(config["MAX_BATCH_EVENTS"])))

    def append() -> tuple[int, dict[str, Any]]:
        with log_errors(stream_name):
            positions = event_log().append(log_name, events)
        live_feed.published(log_name)  # wakes live tails here and (via Redis, off this thread) elsewhere
        metrics.published(principal.tenant_slug, stream_name, len(events))
        results = [{"id": e.id, "partition": p.partition, "offset": p.offset}
                   for e, p in zip(events, positions, strict=True)]
        return 201, {"results": results}

    if idempotency_key is None:
        return append()
    return idempotency.run_once(principal, f"publish:{stream_name}", idempotency_key, body, append)


def raw_events(body: Any, max_events: int) -> list[Any]:
    """The list of event objects a body holds: a batch object, a CloudEvents JSON array, or one event."""
    if isinstance(body, dict) and "events" in body and "type" not in body:
        unknown = sorted(set(body) - {"events"})
        if unknown:
            raise Invalid(f"unknown field(s) next to events: {', '.join(unknown)}", code="unknown_field",
                          details={"fields": unknown})
        items = body["events"]
        if not isinstance(items, list):
            raise Invalid("events must be a list of events", code="invalid_field", details={"field": "events"})
    elif isinstance(body, list):
        items = body  # application/cloudevents-batch+json
    else:
        items = [body]
    if not items:
        raise Invalid("a batch needs at least one event", code="no_events", details={"field": "events"})
    if len(items) > max_events:
        raise TooLarge(f"at most {max_events} events a request", code="too_many_events",
                       details={"max": max_events, "count": len(items)})
    return items


def validate_events(body: Any, max_events: int, max_depth: int) -> list[Event]:
    """Every event of the body as an Event; the first invalid one rejects the request (422 with its index)."""
    items = raw_events(body, max_events)
    events: list[Event] = []
    add = events.append
    for index, obj in enumerate(items):
        try:
            event = event_from_json(obj)
        except EnvelopeError as exc:
            raise _invalid(index, exc.field, str(exc)) from None
        except orjson.JSONEncodeError:  # data nested deeper than orjson encodes (254 levels)
            raise _invalid(index, "data", f"data is nested deeper than {max_depth} levels") from None
        data = event.data
        # Bracket count bounds the depth from above, at C speed; walk the value only when it could be too deep.
        if data.count(b"[") + data.count(b"{") > max_depth and _too_deep(obj.get("data"), max_depth):
            raise _invalid(index, "data", f"data is nested deeper than {max_depth} levels")
        add(event)
    return events


def _invalid(index: int, field: str | None, message: str) -> Invalid:
    return Invalid(f"event {index}: {message}", code="invalid_event", details={"index": index, "field": field})


def _too_deep(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects/arrays more than ``limit`` levels (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
