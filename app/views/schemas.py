"""Console: schema subjects, their versions, side-by-side diffs and a draft compatibility check."""
from __future__ import annotations

import logging

from flask import abort, request
from flask_appbuilder import BaseView, expose, has_access, permission_name
from markupsafe import Markup

from app.bus.registry import SCHEMA_TYPES
from app.security import READ
from app.services import registry_console
from app.services.registry_errors import RegistryError
from app.views.context import console_principal

logger = logging.getLogger(__name__)



class SchemasView(BaseView):
    """The tenant's schema registry, read-only apart from the draft check (which changes nothing)."""

    route_base = "/console/schemas"
    default_view = "list"

    @expose("/")
    @has_access
    def list(self) -> str:
        """Subjects with their latest version and compatibility level, and the tenant's global level."""
        principal = console_principal()
        principal.require(READ)
        return self.render_template("bus/schemas.html", tenant=principal.tenant_slug,
                                    **registry_console.overview(principal))

    @expose("/subject/<subject>", methods=["GET", "POST"])
    @has_access
    @permission_name("show")  # why: Viewers hold can_show; the draft check reads, it changes nothing
    def subject(self, subject: str) -> str:
        """One subject: its versions, one shown in full, and the draft compatibility form (POST)."""
        principal = console_principal()
        principal.require(READ)
        try:
            detail = registry_console.subject_detail(principal, subject, request.args.get("version"))
        except RegistryError:
            abort(404)
        check = draft = None
        draft_type = detail["shown"].get("schemaType", "AVRO")
        if request.method == "POST":  # CSRF-checked by Flask-WTF's CSRFProtect
            draft = request.form.get("schema", "")
            draft_type = request.form.get("schemaType", "AVRO")
            check = registry_console.draft_check(principal, subject, draft_type, draft)
        return self.render_template("bus/schemas_subject.html", tenant=principal.tenant_slug, d=detail,
                                    check=check, draft=draft if draft is not None else detail["shown"]["pretty"],
                                    draft_type=draft_type, schema_types=SCHEMA_TYPES)

    @expose("/subject/<subject>/diff")
    @has_access
    @permission_name("show")
    def diff(self, subject: str) -> str:
        """Two versions side by side (``a`` and ``b``; default: the previous and the latest)."""
        principal = console_principal()
        principal.require(READ)
        try:
            detail = registry_console.subject_detail(principal, subject, None)
            numbers = [v["version"] for v in detail["versions"]]
            left = request.args.get("a") or str(numbers[-2] if len(numbers) > 1 else numbers[-1])
            right = request.args.get("b") or str(numbers[-1])
            result = registry_console.diff(principal, subject, left, right)
        except RegistryError:
            abort(404)
        # why Markup is safe here: HtmlDiff escapes every line of schema text it puts in the table
        return self.render_template("bus/schemas_diff.html", tenant=principal.tenant_slug, d=detail,
                                    diff=result, table=Markup(result["table"]))  # noqa: S704
