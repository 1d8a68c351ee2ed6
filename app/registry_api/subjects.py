"""``/registry/subjects``: list, look up, register, read and delete subjects and their versions."""
from __future__ import annotations

from flask import Response, request

from app.registry_api import bp
from app.registry_api.http import authorized, body, flag, negotiated_type, principal, respond
from app.security import MANAGE, PUBLISH, READ
from app.services import registry


@bp.get("/subjects")
@authorized(READ)
def list_subjects() -> Response:
    """Subject names (``subjectPrefix``, ``deleted``, ``deletedOnly``)."""
    return respond(registry.list_subjects(principal(), request.args.get("subjectPrefix"), flag("deleted"),
                                          flag("deletedOnly")))


@bp.post("/subjects/<subject>")
@authorized(READ)
def lookup(subject: str) -> Response:
    """Which version of ``subject`` holds this schema (``deleted`` includes soft-deleted versions)."""
    return respond(registry.lookup(principal(), subject, body(), flag("deleted")))


@bp.delete("/subjects/<subject>")
@authorized(MANAGE)
def delete_subject(subject: str) -> Response:
    """Soft-delete a subject (``permanent=true`` after that: remove it); returns the versions deleted."""
    return respond(registry.delete_subject(principal(), subject, flag("permanent")))


@bp.get("/subjects/<subject>/versions")
@authorized(READ)
def list_versions(subject: str) -> Response:
    """The subject's version numbers (``deleted``, ``deletedOnly``)."""
    return respond(registry.list_versions(principal(), subject, flag("deleted"), flag("deletedOnly")))


@bp.post("/subjects/<subject>/versions")
@authorized(PUBLISH, MANAGE)  # why PUBLISH too: serializers auto-register with the producer's credentials
def register(subject: str) -> Response:
    """Register a schema under ``subject``: ``{"id"}`` (the existing id when it is already there)."""
    return respond(registry.register(principal(), subject, body()))


@bp.get("/subjects/<subject>/versions/<version>")
@authorized(READ)
def get_version(subject: str, version: str) -> Response:
    """One version (``latest`` or ``-1``: the newest)."""
    return respond(registry.get_version(principal(), subject, version, flag("deleted")))


@bp.get("/subjects/<subject>/versions/<version>/schema")
@authorized(READ)
def get_version_schema(subject: str, version: str) -> Response:
    """The schema text of one version, unwrapped."""
    found = registry.get_version(principal(), subject, version, flag("deleted"))
    return Response(found["schema"], status=200, content_type=negotiated_type())


@bp.get("/subjects/<subject>/versions/<version>/referencedby")
@authorized(READ)
def referenced_by(subject: str, version: str) -> Response:
    """Ids of the schemas that reference this version."""
    return respond(registry.referenced_by(principal(), subject, version))


@bp.delete("/subjects/<subject>/versions/<version>")
@authorized(MANAGE)
def delete_version(subject: str, version: str) -> Response:
    """Soft-delete a version (``permanent=true`` after that: remove it); returns its number."""
    return respond(registry.delete_version(principal(), subject, version, flag("permanent")))
