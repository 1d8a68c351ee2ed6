"""Pull consumer groups: ``/api/v1/groups`` and ``/api/v1/streams/{name}/groups/{group}[/fetch|commit|reset]``."""
from __future__ import annotations

from flask import Response, request
from flask_appbuilder.api import expose

from app.api.base import BusApi
from app.api.http import json_response, no_content, parse_object
from app.security import CONSUME, MANAGE, READ, current_principal, require
from app.services import groups
from app.services.pagination import parse_limit


class GroupsApi(BusApi):
    """Consumer groups of the caller's tenant."""

    resource_name = "groups"
    route_base = "/api/v1"
    openapi_spec_tag = "Consumer groups"

    @expose("/groups", methods=("GET",))
    @require(READ)
    def list(self) -> Response:
        """List the tenant's consumer groups with their lag.
        ---
        get:
          summary: List consumer groups
          parameters:
          - {in: query, name: stream, schema: {type: string}}
          - {in: query, name: limit, schema: {type: integer}}
          - {in: query, name: cursor, schema: {type: string}}
          responses:
            200: {description: "{items: [{group, stream, lag, partitions}], next}"}
        """
        return json_response(groups.list_groups(current_principal(), parse_limit(request.args.get("limit")),
                                                request.args.get("cursor"), request.args.get("stream") or None))

    @expose("/streams/<name>/groups/<group>", methods=("GET",))
    @require(READ)
    def get(self, name: str, group: str) -> Response:
        """Show a group's committed offsets, ends and lag per partition.
        ---
        get:
          summary: Show a consumer group
          responses:
            200: {description: "{group, stream, lag, partitions: [{partition, committed, end, lag}]}"}
            404: {description: no such stream}
        """
        return json_response(groups.group_lag(current_principal(), name, group))

    @expose("/streams/<name>/groups/<group>/fetch", methods=("POST",))
    @require(CONSUME)
    def fetch(self, name: str, group: str) -> Response:
        """Fetch events after the group's committed offsets (again until committed: at least once).
        ---
        post:
          summary: Fetch events for a group
          responses:
            200: {description: "{items: [...]}"}
            422: {description: bad max, wait_ms or partitions}
        """
        return json_response(groups.fetch(current_principal(), name, group, parse_object(required=False)))

    @expose("/streams/<name>/groups/<group>/commit", methods=("POST",))
    @require(CONSUME)
    def commit(self, name: str, group: str) -> Response:
        """Commit the group's next offsets to read.
        ---
        post:
          summary: Commit offsets
          responses:
            204: {description: committed}
            422: {description: a bad partition, or an offset negative or beyond the end}
        """
        groups.commit(current_principal(), name, group, parse_object())
        return no_content()

    @expose("/streams/<name>/groups/<group>/reset", methods=("POST",))
    @require(MANAGE)
    def reset(self, name: str, group: str) -> Response:
        """Reset the group's offsets to earliest, latest, a time or explicit offsets (audited).
        ---
        post:
          summary: Reset a group's offsets
          responses:
            200: {description: the group's new lag view}
            422: {description: an invalid target}
        """
        return json_response(groups.reset(current_principal(), name, group, parse_object()))
