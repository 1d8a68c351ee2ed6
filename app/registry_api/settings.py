"""``/registry/config``, ``/registry/mode``, ``/registry/compatibility``, plus the small endpoints clients probe."""
from __future__ import annotations

from flask import Response

from app.registry_api import bp
from app.registry_api.http import authorized, body, error_response, flag, principal, respond
from app.security import MANAGE, READ
from app.services import registry_config


@bp.get("/")
@bp.get("")
def root() -> Response:
    """Confluent answers ``{}`` at its root; load balancers and clients use it as a liveness probe."""
    return respond({})


@bp.get("/contexts")
@authorized(READ)
def contexts() -> Response:
    """Only the default context: each tenant is its own registry."""
    return respond(["."])


@bp.route("/associations", methods=("GET", "POST", "PUT", "DELETE"))
@bp.route("/associations/<path:_rest>", methods=("GET", "POST", "PUT", "DELETE"))
def associations(_rest: str = "") -> Response:
    """Not supported: a 404 makes newer clients fall back to their subject name strategy (topic naming)."""
    return error_response(404, "associations are not supported by this registry", 404)


@bp.get("/config")
@authorized(READ)
def get_global_config() -> Response:
    """The tenant's compatibility level."""
    return respond(registry_config.get_config(principal(), None))


@bp.put("/config")
@authorized(MANAGE)
def put_global_config() -> Response:
    """Set the tenant's compatibility level: ``{"compatibility": "FULL"}``."""
    return respond(registry_config.put_config(principal(), None, body()))


@bp.delete("/config")
@authorized(MANAGE)
def delete_global_config() -> Response:
    """Back to BACKWARD; returns the level removed."""
    return respond(registry_config.delete_config(principal(), None))


@bp.get("/config/<subject>")
@authorized(READ)
def get_subject_config(subject: str) -> Response:
    """A subject's own level (``defaultToGlobal=true``: else the tenant's)."""
    return respond(registry_config.get_config(principal(), subject, flag("defaultToGlobal")))


@bp.put("/config/<subject>")
@authorized(MANAGE)
def put_subject_config(subject: str) -> Response:
    """Set a subject's level."""
    return respond(registry_config.put_config(principal(), subject, body()))


@bp.delete("/config/<subject>")
@authorized(MANAGE)
def delete_subject_config(subject: str) -> Response:
    """Remove a subject's level (it follows the tenant's again)."""
    return respond(registry_config.delete_config(principal(), subject))


@bp.post("/compatibility/subjects/<subject>/versions/<version>")
@authorized(READ)
def compatibility_with_version(subject: str, version: str) -> Response:
    """``{"is_compatible"}`` against one version (``verbose=true`` adds ``messages``)."""
    return respond(registry_config.compatibility_check(principal(), subject, version, body(), flag("verbose")))


@bp.post("/compatibility/subjects/<subject>/versions")
@authorized(READ)
def compatibility_with_subject(subject: str) -> Response:
    """``{"is_compatible"}`` against the versions the subject's level checks on registration."""
    return respond(registry_config.compatibility_check(principal(), subject, None, body(), flag("verbose")))


@bp.get("/mode")
@authorized(READ)
def get_global_mode() -> Response:
    """The tenant's mode."""
    return respond(registry_config.get_mode(principal(), None))


@bp.put("/mode")
@authorized(MANAGE)
def put_global_mode() -> Response:
    """Set the tenant's mode (``force=true`` to enter IMPORT with subjects present)."""
    return respond(registry_config.put_mode(principal(), None, body(), flag("force")))


@bp.get("/mode/<subject>")
@authorized(READ)
def get_subject_mode(subject: str) -> Response:
    """A subject's own mode (``defaultToGlobal=true``: else the tenant's)."""
    return respond(registry_config.get_mode(principal(), subject, flag("defaultToGlobal")))


@bp.put("/mode/<subject>")
@authorized(MANAGE)
def put_subject_mode(subject: str) -> Response:
    """Set a subject's mode."""
    return respond(registry_config.put_mode(principal(), subject, body(), flag("force")))


@bp.delete("/mode/<subject>")
@authorized(MANAGE)
def delete_subject_mode(subject: str) -> Response:
    """Remove a subject's mode; returns it."""
    return respond(registry_config.delete_mode(principal(), subject))
