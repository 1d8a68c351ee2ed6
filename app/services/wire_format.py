"""Decoding of Confluent wire-format data (magic byte 0 + schema id + payload) for reads and webhook bodies.

Records that Confluent's AvroSerializer or JSONSerializer wrote straight into a stream's Kafka topic carry
binary data. Reads through the API (and webhook bodies) show them as JSON when the schema id is one of the
tenant's: ``data`` becomes the decoded value, ``datacontenttype`` ``application/json`` and ``dataschema``
(when the record had none) ``/registry/schemas/ids/{id}``. Anything else passes through unchanged.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import orjson

from app.bus.envelope import JSON_CONTENT_TYPE, Event, Record
from app.bus.registry import ParsedSchema, avro_decode, decode_wire
from app.services import registry_errors as errors
from app.services import registry_store as store

logger = logging.getLogger(__name__)

FOUND_TTL_S = 300.0  # a schema id's content never changes; only a permanent delete retires it
MISSING_TTL_S = 5.0  # unknown ids are asked again soon: the schema may be registered meanwhile
CACHE_SIZE = 4096
_DECODABLE = ("AVRO", "JSON")

def _schema(tenant_id: int, schema_id: int) -> ParsedSchema | None:
    """The tenant's schema ``schema_id`` parsed (None when unknown or another tenant's), cached."""
    cache = store.app_cache("wire")
    key = (tenant_id, schema_id)
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        parsed: ParsedSchema | None = store.parsed_schema(store.schema_row(tenant_id, schema_id))
    except errors.RegistryError:
        parsed = None
    store.cache_put(cache, key, (now + (FOUND_TTL_S if parsed is not None else MISSING_TTL_S), parsed), CACHE_SIZE)
    return parsed


def might_be_wire(event: Event) -> bool:
    """A cheap test: could the data be Confluent wire format (magic byte 0, schema id, payload)?"""
    data = event.data
    return len(data) >= 5 and data[0] == 0 and not event.is_json


def decode_records(tenant_id: int, records: Sequence[Record]) -> list[Record]:
    """Every record with its data decoded (see ``decode_event_data``); needs the app context."""
    return [decode_record(tenant_id, r) for r in records]


def decode_event_data(tenant_id: int, event: Event) -> Event:
    """The event with wire-format data decoded to JSON, or the event itself when there is nothing to decode."""
    # why this test first: it is all that most events (JSON, text) ever cost
    if not might_be_wire(event):
        return event
    framed = decode_wire(event.data)
    if framed is None:
        return event
    schema_id, payload = framed
    parsed = _schema(tenant_id, schema_id)
    if parsed is None or parsed.schema_type not in _DECODABLE:
        return event
    try:
        value = avro_decode(parsed, payload) if parsed.schema_type == "AVRO" else orjson.loads(payload)
        decoded = orjson.dumps(value)
    except Exception as exc:  # noqa: BLE001 (bytes that merely look framed: show them as they are)
        logger.debug("data of event %s does not decode with schema %s: %s", event.id, schema_id, exc)
        return event
    return dataclasses.replace(event, data=decoded, datacontenttype=JSON_CONTENT_TYPE,
                               dataschema=event.dataschema or f"/registry/schemas/ids/{schema_id}")


def decode_record(tenant_id: int, record: Record) -> Record:
    """The record with its event's data decoded (see ``decode_event_data``)."""
    event = decode_event_data(tenant_id, record.event)
    return record if event is record.event else dataclasses.replace(record, event=event)
