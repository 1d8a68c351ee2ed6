"""The base of every bus API: FAB's BaseApi (OpenAPI for free) with the bus's own auth (app/security.py)."""
from __future__ import annotations

from flask_appbuilder.api import BaseApi


class BusApi(BaseApi):
    """Routes under ``/api/v1``; each endpoint checks its permission with ``@require``."""

    version = "v1"
    # Permissions are the bus's (roles and key scopes), not FAB's per-view permission rows.
    base_permissions: list[str] = []
    openapi_spec_tag = "Bus"
