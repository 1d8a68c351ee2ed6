"""Operations endpoints: ``/health``, ``/ready``, ``/metrics`` (Prometheus)."""
from __future__ import annotations

from flask import Response
from flask_appbuilder.api import expose
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.base import BusApi
from app.api.http import json_response
from app.services.health import readiness


class OpsApi(BusApi):
    """Unauthenticated probes for load balancers and Prometheus."""

    resource_name = "ops"
    route_base = ""
    openapi_spec_tag = "Operations"

    @expose("/health", methods=("GET",))
    def health(self) -> Response:
        """The process is alive.
        ---
        get:
          summary: Liveness
          responses:
            200: {description: alive}
        """
        return json_response({"status": "ok"})

    @expose("/ready", methods=("GET",))
    def ready(self) -> Response:
        """Database, event log and Redis reachable.
        ---
        get:
          summary: Readiness
          responses:
            200: {description: ready}
            503: {description: a dependency is down}
        """
        checks = readiness()
        ok = all(v == "ok" for v in checks.values())
        return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    @expose("/metrics", methods=("GET",))
    def metrics(self) -> Response:
        """Prometheus text format.
        ---
        get:
          summary: Prometheus metrics
          responses:
            200: {description: metrics}
        """
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
