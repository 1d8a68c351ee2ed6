"""Operations endpoints (/health, /ready, /metrics) and the JSON error shape of routing errors."""
from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.apps import TenantCtx


def assert_error_shape(resp: Any, status: int) -> None:
    """API.md's error body with ``status``."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    error = resp.get_json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and isinstance(error["details"], dict)


def test_health_is_200_without_credentials(client: FlaskClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_ready_checks_database_and_event_log(client: FlaskClient) -> None:
    resp = client.get("/ready")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok" and body["checks"]["event_log"] == "ok"
    assert all(value == "ok" for value in body["checks"].values())


def test_metrics_count_published_events(client: FlaskClient, tenant: TenantCtx) -> None:
    assert client.post("/api/v1/streams", headers=tenant.headers(), json={"name": "metered"}).status_code == 201
    resp = client.post("/api/v1/streams/metered/events", headers=tenant.headers("publish"),
                       json={"events": [{"type": "m.one", "data": 1}, {"type": "m.two", "data": 2}]})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    assert "python_info" in families or "process_cpu_seconds" in families  # the standard collectors
    published = families["bus_events_published"]  # the parser drops the counter's _total suffix
    mine = [s.value for s in published.samples
            if s.name.endswith("_total") and s.labels == {"tenant": tenant.slug, "stream": "metered"}]
    assert mine == [2.0]


def test_unknown_api_path_is_a_json_404(client: FlaskClient) -> None:
    assert_error_shape(client.get("/api/v1/no-such-thing"), 404)
    assert_error_shape(client.post("/api/v1/streams/x/no-such-thing", json={}), 404)


def test_wrong_method_is_a_json_405(client: FlaskClient, tenant: TenantCtx) -> None:
    assert_error_shape(client.delete("/api/v1/tenants", headers=tenant.headers()), 405)
    assert_error_shape(client.put("/api/v1/streams", headers=tenant.headers(), json={}), 405)
    assert_error_shape(client.post("/health"), 405)
