"""``/registry/schemas``: schemas by id, their subjects and versions, the list of schemas, supported types."""
from __future__ import annotations

from flask import Response, request

from app.registry_api import bp
from app.registry_api.http import authorized, flag, int_arg, negotiated_type, principal, respond
from app.security import READ
from app.services import registry_ids


@bp.get("/schemas")
@authorized(READ)
def list_schemas() -> Response:
    """Subject versions with schemas (``subjectPrefix``, ``deleted``, ``latestOnly``, ``offset``, ``limit``)."""
    return respond(registry_ids.list_schemas(principal(), request.args.get("subjectPrefix"), flag("deleted"),
                                             flag("latestOnly"), max(0, int_arg("offset", 0)), int_arg("limit", -1)))


@bp.get("/schemas/types")
@authorized(READ)
def schema_types() -> Response:
    """The schema types this registry accepts."""
    return respond(registry_ids.schema_types())


@bp.get("/schemas/ids/<int:schema_id>")
@authorized(READ)
def get_schema(schema_id: int) -> Response:
    """``{"schema", "schemaType"?, "references"?}`` of schema ``schema_id``."""
    return respond(registry_ids.get_schema(principal(), schema_id))


@bp.get("/schemas/ids/<int:schema_id>/schema")
@authorized(READ)
def get_schema_text(schema_id: int) -> Response:
    """The schema text alone."""
    return Response(registry_ids.get_schema_text(principal(), schema_id), content_type=negotiated_type())


@bp.get("/schemas/ids/<int:schema_id>/subjects")
@authorized(READ)
def schema_subjects(schema_id: int) -> Response:
    """Subjects with a version holding this schema (``deleted``)."""
    return respond(registry_ids.subjects_of(principal(), schema_id, flag("deleted")))


@bp.get("/schemas/ids/<int:schema_id>/versions")
@authorized(READ)
def schema_versions(schema_id: int) -> Response:
    """``[{"subject", "version"}]`` holding this schema (``deleted``)."""
    return respond(registry_ids.versions_of(principal(), schema_id, flag("deleted")))
