"""``/api/v1/streams``: create, list, show, change, delete streams."""
from __future__ import annotations

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, no_content, parse_object
from app.security import MANAGE, READ, current_principal, require
from app.services import streams
from app.services.pagination import parse_limit


class StreamsApi(BusApi):
    """Streams of the caller's tenant."""

    resource_name = "streams"
    openapi_spec_tag = "Streams"

    @expose("", methods=("POST",))
    @require(MANAGE)
    def create(self) -> Response:
        """Create a stream.
        ---
        post:
          summary: Create a stream
          responses:
            201: {description: the stream}
            409: {description: a stream of that name exists}
            422: {description: invalid name or partition count}
        """
        stream = streams.create_stream(current_principal(), parse_object())
        return json_response(streams.stream_to_json(stream, with_partitions=True), 201)

    @expose("", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """List the tenant's streams.
        ---
        get:
          summary: List streams
          responses:
            200: {description: "{items, next}"}
        """
        items, nxt = streams.list_streams(current_principal(), parse_limit(request.args.get("limit")),
                                          request.args.get("cursor"))
        return json_response({"items": [streams.stream_to_json(s) for s in items], "next": nxt})

    @expose("/<name>", methods=("GET",))
    @require(READ)
    def get(self, name: str) -> Response:
        """Show a stream with its partitions' low and high offsets.
        ---
        get:
          summary: Show a stream
          responses:
            200: {description: the stream}
            404: {description: no such stream}
        """
        stream = streams.get_stream(current_principal(), name)
        return json_response(streams.stream_to_json(stream, with_partitions=True))

    @expose("/<name>", methods=("PATCH",))
    @require(MANAGE)
    def patch(self, name: str) -> Response:
        """Change retention, description, schema subject; grow partitions.
        ---
        patch:
          summary: Change a stream
          responses:
            200: {description: the stream}
            422: {description: invalid change}
        """
        stream = streams.update_stream(current_principal(), name, parse_object())
        return json_response(streams.stream_to_json(stream, with_partitions=True))

    @expose("/<name>", methods=("DELETE",))
    @require(MANAGE)
    def delete(self, name: str) -> Response:
        """Delete a stream and its events.
        ---
        delete:
          summary: Delete a stream
          responses:
            204: {description: deleted}
        """
        streams.delete_stream(current_principal(), name)
        return no_content()
