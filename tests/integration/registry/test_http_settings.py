"""Raw HTTP: config, compatibility tests, modes, auth, and the protocol errors (404, 405, 415, 400)."""
from __future__ import annotations

import base64
import json

from flask.testing import FlaskClient

from tests.integration.registry.conftest import V1
from tests.integration.registry.test_http_subjects import RECORD, RECORD_2, call, error, new_subject, register
from tests.support.apps import TenantCtx

BREAKING = {**RECORD, "fields": [{"name": "sku", "type": "int"}]}


def test_global_config_get_put_delete(client: FlaskClient, tenant: TenantCtx) -> None:
    assert call(client, "GET", "/config", tenant).get_json(force=True) == {"compatibilityLevel": "BACKWARD"}
    resp = call(client, "PUT", "/config", tenant, {"compatibility": "FULL_TRANSITIVE", "unknown": 1})
    assert resp.get_json(force=True) == {"compatibility": "FULL_TRANSITIVE"}
    assert call(client, "GET", "/config", tenant).get_json(force=True) == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert call(client, "DELETE", "/config", tenant).get_json(force=True) == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert call(client, "GET", "/config", tenant).get_json(force=True) == {"compatibilityLevel": "BACKWARD"}
    error(call(client, "PUT", "/config", tenant, {"compatibility": "SIDEWAYS"}), 422, 42203)
    error(call(client, "PUT", "/config", tenant, {}), 422, 42203)


def test_subject_config_and_default_to_global(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    error(call(client, "GET", f"/config/{subject}", tenant), 404, 40408)
    assert call(client, "GET", f"/config/{subject}?defaultToGlobal=true", tenant).get_json(force=True) == {
        "compatibilityLevel": "BACKWARD"}
    error(call(client, "DELETE", f"/config/{subject}", tenant), 404, 40401)
    assert call(client, "PUT", f"/config/{subject}", tenant, {"compatibility": "none"}).get_json(force=True) == {
        "compatibility": "NONE"}
    assert call(client, "GET", f"/config/{subject}", tenant).get_json(force=True) == {"compatibilityLevel": "NONE"}
    register(client, tenant, subject, RECORD)
    register(client, tenant, subject, BREAKING)  # NONE: anything goes
    assert call(client, "DELETE", f"/config/{subject}", tenant).get_json(force=True) == {"compatibilityLevel": "NONE"}
    error(call(client, "PUT", f"/config/{subject}", tenant, {"compatibility": 7}), 422, 42203)


def test_compatibility_endpoints(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    # No versions yet: the subject-wide check passes, a named version is 40401.
    assert call(client, "POST", f"/compatibility/subjects/{subject}/versions", tenant,
                {"schema": json.dumps(RECORD)}).get_json(force=True) == {"is_compatible": True}
    error(call(client, "POST", f"/compatibility/subjects/{subject}/versions/latest", tenant,
               {"schema": json.dumps(RECORD)}), 404, 40401)
    register(client, tenant, subject, RECORD)

    good = call(client, "POST", f"/compatibility/subjects/{subject}/versions/latest", tenant,
                {"schema": json.dumps(RECORD_2)})
    assert good.get_json(force=True) == {"is_compatible": True}
    bad = call(client, "POST", f"/compatibility/subjects/{subject}/versions/1?verbose=true", tenant,
               {"schema": json.dumps(BREAKING)}).get_json(force=True)
    assert bad["is_compatible"] is False
    assert bad["messages"] and all(isinstance(m, str) for m in bad["messages"])
    quiet = call(client, "POST", f"/compatibility/subjects/{subject}/versions", tenant,
                 {"schema": json.dumps(BREAKING)}).get_json(force=True)
    assert quiet == {"is_compatible": False}
    error(call(client, "POST", f"/compatibility/subjects/{subject}/versions/9", tenant,
               {"schema": json.dumps(RECORD)}), 404, 40402)
    error(call(client, "POST", f"/compatibility/subjects/{subject}/versions/x", tenant,
               {"schema": json.dumps(RECORD)}), 422, 42202)
    error(call(client, "POST", f"/compatibility/subjects/{subject}/versions", tenant, {"schema": "{"}), 422, 42201)


def test_modes(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    register(client, tenant, subject, RECORD)
    assert call(client, "GET", "/mode", tenant).get_json(force=True) == {"mode": "READWRITE"}
    error(call(client, "GET", f"/mode/{subject}", tenant), 404, 40409)
    assert call(client, "GET", f"/mode/{subject}?defaultToGlobal=true", tenant).get_json(force=True) == {
        "mode": "READWRITE"}
    error(call(client, "PUT", "/mode", tenant, {"mode": "SLEEPY"}), 422, 42204)
    error(call(client, "DELETE", f"/mode/{subject}", tenant), 404, 40401)

    assert call(client, "PUT", "/mode", tenant, {"mode": "READONLY"}).get_json(force=True) == {"mode": "READONLY"}
    try:
        error(call(client, "POST", f"/subjects/{subject}/versions", tenant, {"schema": json.dumps(RECORD_2)}),
              422, 42205)
        error(call(client, "DELETE", f"/subjects/{subject}", tenant), 422, 42205)
        # A subject's own mode wins over the tenant's.
        assert call(client, "PUT", f"/mode/{subject}", tenant, {"mode": "READWRITE"}).status_code == 200
        assert register(client, tenant, subject, RECORD_2)["version"] == 2
        assert call(client, "DELETE", f"/mode/{subject}", tenant).get_json(force=True) == {"mode": "READWRITE"}
    finally:
        call(client, "PUT", "/mode", tenant, {"mode": "READWRITE"})


def test_import_mode_keeps_ids_and_versions(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = new_subject()
    error(call(client, "POST", f"/subjects/{subject}/versions", tenant,
               {"schema": json.dumps(RECORD), "id": 1_500_000_001}), 422, 42205)  # not in import mode
    register(client, tenant, new_subject(), RECORD)
    error(call(client, "PUT", "/mode", tenant, {"mode": "IMPORT"}), 422, 42205)  # subjects exist: needs force
    assert call(client, "PUT", f"/mode/{subject}", tenant, {"mode": "IMPORT"}).status_code == 200
    imported = {**RECORD, "name": "Imported"}

    resp = register(client, tenant, subject, imported, id=1_500_000_001, version=7)

    assert resp == {"id": 1_500_000_001, "version": 7}
    assert call(client, "GET", f"/subjects/{subject}/versions/7", tenant).get_json(force=True)["id"] == 1_500_000_001
    error(call(client, "POST", f"/subjects/{subject}/versions", tenant,
               {"schema": json.dumps(imported), "id": 1_500_000_002}), 422, 42207)  # same schema, other id
    # Ids keep growing past an imported one: a new schema outside IMPORT gets a fresh, higher id.
    call(client, "DELETE", f"/mode/{subject}", tenant)
    fresh = register(client, tenant, new_subject(), {**RECORD, "name": "AfterImport"})
    assert fresh["id"] > 1_500_000_001


def test_auth_errors_are_confluent_shaped(client: FlaskClient, tenant: TenantCtx) -> None:
    error(call(client, "GET", "/subjects", None), 401, 40101)
    error(call(client, "GET", "/subjects", None, Authorization="Bearer ebk_not-a-key"), 401, 40101)
    error(call(client, "GET", "/subjects", None, Authorization="Basic %%%"), 401, 40101)
    wrong = base64.b64encode(b"user:password").decode()
    error(call(client, "GET", "/subjects", None, Authorization=f"Basic {wrong}"), 401, 40101)
    assert call(client, "GET", "/subjects", None).headers["WWW-Authenticate"].startswith("Basic")
    # Basic with the API key as the password, as basic.auth.user.info sends it.
    good = base64.b64encode(f"key-id:{tenant.keys['consume']}".encode()).decode()
    assert call(client, "GET", "/subjects", None, Authorization=f"Basic {good}").status_code == 200
    # A consume key reads but may not register, delete or configure.
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", tenant, {"schema": json.dumps(RECORD)},
               scope="consume"), 403, 40301)
    error(call(client, "PUT", "/config", tenant, {"compatibility": "NONE"}, scope="publish"), 403, 40301)


def test_user_tokens_work_too(client: FlaskClient, tenant: TenantCtx, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}", "X-Tenant": tenant.slug}
    resp = client.get("/registry/config", headers=headers)
    assert resp.status_code == 200
    assert resp.get_json(force=True) == {"compatibilityLevel": "BACKWARD"}


def test_protocol_errors(client: FlaskClient, tenant: TenantCtx) -> None:
    error(call(client, "GET", "/no/such/route", tenant), 404, 404)
    error(call(client, "GET", "/schemas/ids/not-a-number", tenant), 404, 404)
    resp = call(client, "PATCH", "/subjects", tenant)
    error(resp, 405, 405)
    assert "GET" in resp.headers["Allow"]
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", tenant, "<xml/>", content_type="text/xml"),
          415, 415)
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", tenant, "{not json"), 400, 400)
    error(call(client, "POST", f"/subjects/{new_subject()}/versions", tenant, "[1]"), 400, 400)
    # The API's own errors keep API.md's shape.
    assert "error" in client.get("/api/v1/no-such-thing", headers=tenant.headers()).get_json()


def test_probes_clients_make(client: FlaskClient, tenant: TenantCtx) -> None:
    assert client.get("/registry/").get_json(force=True) == {}
    assert call(client, "GET", "/contexts", tenant).get_json(force=True) == ["."]
    for method in ("GET", "POST", "DELETE"):
        resp = call(client, method, "/associations/resources/-/orders?resourceType=topic", tenant)
        error(resp, 404, 404)
    assert call(client, "GET", "/subjects", tenant).mimetype == V1
