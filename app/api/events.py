"""``/api/v1/streams/{name}/events``: publish, list and show events."""
from __future__ import annotations

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, parse_json
from app.security import PUBLISH, READ, current_principal, require
from app.services import events_read
from app.services.publish import publish_events


class EventsApi(BusApi):
    """Events of the caller's tenant's streams."""

    resource_name = "events"
    route_base = "/api/v1/streams"
    openapi_spec_tag = "Events"

    @expose("/<name>/events", methods=("POST",))
    @require(PUBLISH)
    def publish(self, name: str) -> Response:
        """Publish one event, ``{"events": [...]}`` or a CloudEvents JSON array; all or nothing.
        ---
        post:
          summary: Publish events
          parameters:
          - {in: header, name: Idempotency-Key, schema: {type: string}, required: false,
             description: "the same key within 24 h returns the first response and appends nothing"}
          responses:
            201: {description: "{results: [{id, partition, offset}]}, once the events are durable"}
            400: {description: malformed JSON}
            404: {description: no such stream}
            409: {description: a request with this Idempotency-Key is in progress}
            413: {description: more than 10,000 events or 10 MiB}
            415: {description: not JSON}
            422: {description: "an invalid event (details: index, field), or a reused Idempotency-Key"}
        """
        status, body = publish_events(current_principal(), name, parse_json(),
                                      request.headers.get("Idempotency-Key"))
        return json_response(body, status)

    @expose("/<name>/events", methods=("GET",))
    @require(READ)
    def list(self, name: str) -> Response:
        """List events in offset order per partition, filtered by type (glob), key or a data substring.
        ---
        get:
          summary: List events
          parameters:
          - {in: query, name: partition, schema: {type: integer}}
          - {in: query, name: offset, schema: {type: integer}, description: needs partition}
          - {in: query, name: from_time, schema: {type: string, format: date-time}}
          - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000}}
          - {in: query, name: type, schema: {type: string}, description: "exact or glob, e.g. order.*"}
          - {in: query, name: key, schema: {type: string}}
          - {in: query, name: q, schema: {type: string}, description: substring of the data (JSON text)}
          - {in: query, name: cursor, schema: {type: string}, description: next of the previous page}
          responses:
            200: {description: "{items, next}"}
            400: {description: a malformed parameter}
            404: {description: no such stream}
            422: {description: no such partition, or an offset beyond its end}
        """
        return json_response(events_read.list_events(current_principal(), name, request.args))

    @expose("/<name>/events/<partition>/<offset>", methods=("GET",))
    @require(READ)
    def get(self, name: str, partition: str, offset: str) -> Response:
        """Show one event by partition and offset.
        ---
        get:
          summary: Show an event
          responses:
            200: {description: the event with partition and offset}
            404: {description: no such stream or event}
        """
        return json_response(events_read.get_event(current_principal(), name, partition, offset))
