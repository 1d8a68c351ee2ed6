"""Authentication and authorisation: JWT, API keys (Bearer and Basic), scopes, roles, X-Tenant, secrets."""
from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.support.apps import TenantCtx, login

PASSWORD = "correct-horse-battery"


def bearer(token: str) -> dict[str, str]:
    """Authorization header for a JWT or an API key."""
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    """HTTP Basic header."""
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer has ``status`` and API.md's error shape (and ``code`` when given)."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], dict)
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def make_user(client: FlaskClient, admin_token: str, role: str, tenants: list[str]) -> str:
    """Create a user through the API and return its username."""
    username = f"u-{role.lower()}-{uuid.uuid4().hex[:8]}"
    resp = client.post("/api/v1/users", headers=bearer(admin_token),
                       json={"username": username, "password": PASSWORD, "role": role, "tenants": tenants})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return username


def new_key(client: FlaskClient, tenant: TenantCtx, scopes: list[str]) -> dict[str, Any]:
    """Create a key in ``tenant`` with its manage-and-everything key."""
    resp = client.post("/api/v1/api-keys", headers=tenant.headers("all"), json={"name": "k", "scopes": scopes})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def test_jwt_login_gives_a_working_token(client: FlaskClient, admin_token: str) -> None:
    assert client.get("/api/v1/streams", headers=bearer(admin_token)).status_code == 200
    resp = client.post("/api/v1/security/login", json={"username": "admin", "password": "wrong", "provider": "db"})
    assert resp.status_code == 401


def test_api_key_as_bearer_and_as_basic_password(client: FlaskClient, tenant: TenantCtx) -> None:
    key = tenant.keys["manage"]
    assert client.get("/api/v1/streams", headers=bearer(key)).status_code == 200
    assert client.get("/api/v1/streams", headers=basic("any-user-name", key)).status_code == 200
    assert client.get("/api/v1/streams", headers=basic("", key)).status_code == 200


def test_create_key_answers_the_key_once(client: FlaskClient, tenant: TenantCtx) -> None:
    created = new_key(client, tenant, ["publish", "consume"])
    assert set(created) >= {"id", "name", "scopes", "tenant", "prefix", "created_at", "key"}
    assert created["key"].startswith("ebk_") and created["key"].startswith(created["prefix"])
    assert created["scopes"] == ["consume", "publish"] and created["tenant"] == tenant.slug
    shown = client.get(f"/api/v1/api-keys/{created['id']}", headers=tenant.headers()).get_json()
    assert "key" not in shown and shown["prefix"] == created["prefix"]
    listed = client.get("/api/v1/api-keys", headers=tenant.headers()).get_json()
    assert created["id"] in {k["id"] for k in listed["items"]}
    assert all("key" not in k and "key_hash" not in k for k in listed["items"])
    assert {k["tenant"] for k in listed["items"]} == {tenant.slug}


@pytest.mark.parametrize("body,code", [
    ({"name": "x", "scopes": []}, "invalid_field"),
    ({"name": "x", "scopes": ["read"]}, "invalid_scope"),
    ({"name": "x", "scopes": "publish"}, "invalid_field"),
    ({"name": "", "scopes": ["publish"]}, "invalid_field"),
    ({"name": "x", "scopes": ["publish"], "extra": 1}, "unknown_field"),
])
def test_create_key_validates(client: FlaskClient, tenant: TenantCtx, body: dict[str, Any], code: str) -> None:
    assert_error(client.post("/api/v1/api-keys", headers=tenant.headers(), json=body), 422, code)


def test_scopes_are_enforced(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = {"name": f"s-{uuid.uuid4().hex[:8]}"}
    for scope in ("publish", "consume"):
        assert_error(client.post("/api/v1/streams", headers=tenant.headers(scope), json=stream), 403, "forbidden")
        assert_error(client.post("/api/v1/api-keys", headers=tenant.headers(scope),
                                 json={"name": "x", "scopes": [scope]}), 403)
        assert client.get("/api/v1/streams", headers=tenant.headers(scope)).status_code == 200
    assert client.post("/api/v1/streams", headers=tenant.headers("manage"), json=stream).status_code == 201
    event = {"type": "t.created", "data": {"n": 1}}
    assert_error(client.post(f"/api/v1/streams/{stream['name']}/events", headers=tenant.headers("manage"),
                             json=event), 403)
    assert_error(client.post(f"/api/v1/streams/{stream['name']}/events", headers=tenant.headers("consume"),
                             json=event), 403)
    assert client.post(f"/api/v1/streams/{stream['name']}/events", headers=tenant.headers("publish"),
                       json=event).status_code == 201
    assert_error(client.post(f"/api/v1/streams/{stream['name']}/groups/g1/fetch",
                             headers=tenant.headers("publish"), json={"max": 1, "wait_ms": 0}), 403)


def test_a_key_cannot_hand_out_scopes_it_lacks(client: FlaskClient, tenant: TenantCtx) -> None:
    assert_error(client.post("/api/v1/api-keys", headers=tenant.headers("manage"),
                             json={"name": "x", "scopes": ["publish"]}), 403, "scope_not_held")
    assert client.post("/api/v1/api-keys", headers=tenant.headers("manage"),
                       json={"name": "x", "scopes": ["manage"]}).status_code == 201


def test_only_admins_name_another_tenant(client: FlaskClient, admin_token: str, tenant: TenantCtx,
                                         other_tenant: TenantCtx) -> None:
    body = {"name": "x", "scopes": ["manage"]}
    own = client.post("/api/v1/api-keys", headers=tenant.headers(), json={**body, "tenant": tenant.slug})
    assert own.status_code == 201 and own.get_json()["tenant"] == tenant.slug
    for slug in (other_tenant.slug, "no-such-tenant"):
        assert_error(client.post("/api/v1/api-keys", headers=tenant.headers(), json={**body, "tenant": slug}),
                     404, "tenant_not_found")
    by_admin = client.post("/api/v1/api-keys", headers=bearer(admin_token), json={**body, "tenant": tenant.slug})
    assert by_admin.status_code == 201 and by_admin.get_json()["tenant"] == tenant.slug
    assert_error(client.post("/api/v1/api-keys", headers=bearer(admin_token),
                             json={**body, "tenant": "no-such-tenant"}), 404)


def test_revoked_key_is_refused(client: FlaskClient, tenant: TenantCtx) -> None:
    created = new_key(client, tenant, ["manage"])
    assert client.get("/api/v1/streams", headers=bearer(created["key"])).status_code == 200
    assert client.delete(f"/api/v1/api-keys/{created['id']}", headers=tenant.headers()).status_code == 204
    assert_error(client.get("/api/v1/streams", headers=bearer(created["key"])), 401, "invalid_credentials")
    assert_error(client.get("/api/v1/streams", headers=basic(created["id"], created["key"])), 401)
    shown = client.get(f"/api/v1/api-keys/{created['id']}", headers=tenant.headers()).get_json()
    assert shown["revoked_at"] is not None
    assert client.delete(f"/api/v1/api-keys/{created['id']}", headers=tenant.headers()).status_code == 204
    assert_error(client.delete(f"/api/v1/api-keys/{uuid.uuid4()}", headers=tenant.headers()), 404,
                 "api_key_not_found")


def test_no_credentials_is_401_with_the_error_shape(client: FlaskClient) -> None:
    for path in ("/api/v1/streams", "/api/v1/api-keys", "/api/v1/tenants", "/api/v1/users"):
        assert_error(client.get(path), 401, "unauthorized")
    assert_error(client.post("/api/v1/streams", json={"name": "x"}), 401)


@pytest.mark.parametrize("header", [
    "Bearer garbage",
    "Bearer ebk_not-a-real-key",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"admin:admin-test-password").decode(),
    "Token something",
    "Bearer",
])
def test_bad_credentials_are_401(client: FlaskClient, header: str) -> None:
    assert_error(client.get("/api/v1/streams", headers={"Authorization": header}), 401)


def test_x_tenant_picks_the_tenant_of_a_user_of_several(client: FlaskClient, admin_token: str,
                                                         tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    name = f"s-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/streams", headers=tenant.headers(), json={"name": name}).status_code == 201
    username = make_user(client, admin_token, "Operator", [tenant.slug, other_tenant.slug])
    token = login(client, username, PASSWORD)
    assert_error(client.get("/api/v1/streams", headers=bearer(token)), 400, "tenant_required")
    in_a = client.get("/api/v1/streams", headers={**bearer(token), "X-Tenant": tenant.slug})
    assert in_a.status_code == 200 and name in {s["name"] for s in in_a.get_json()["items"]}
    in_b = client.get("/api/v1/streams", headers={**bearer(token), "X-Tenant": other_tenant.slug})
    assert in_b.status_code == 200 and name not in {s["name"] for s in in_b.get_json()["items"]}
    # A tenant the user is no member of does not exist, as far as this user can tell.
    assert_error(client.get("/api/v1/streams", headers={**bearer(token), "X-Tenant": "default"}), 404)
    created = client.post("/api/v1/streams", headers={**bearer(token), "X-Tenant": other_tenant.slug},
                          json={"name": name})
    assert created.status_code == 201, "same name in another tenant is another stream"


def test_viewer_reads_but_does_not_write(client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    token = login(client, make_user(client, admin_token, "Viewer", [tenant.slug]), PASSWORD)
    assert client.get("/api/v1/streams", headers=bearer(token)).status_code == 200
    assert_error(client.post("/api/v1/streams", headers=bearer(token), json={"name": "v"}), 403, "forbidden")
    assert_error(client.post("/api/v1/api-keys", headers=bearer(token),
                             json={"name": "v", "scopes": ["publish"]}), 403)
    assert_error(client.get("/api/v1/api-keys", headers=bearer(token)), 403)


def test_operator_manages_keys_of_its_tenant(client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    token = login(client, make_user(client, admin_token, "Operator", [tenant.slug]), PASSWORD)
    resp = client.post("/api/v1/api-keys", headers=bearer(token), json={"name": "op", "scopes": ["publish"]})
    assert resp.status_code == 201 and resp.get_json()["tenant"] == tenant.slug


def test_tenants_and_users_are_for_admins_only(client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    operator = login(client, make_user(client, admin_token, "Operator", [tenant.slug]), PASSWORD)
    user_body = {"username": f"x-{uuid.uuid4().hex[:6]}", "password": PASSWORD, "role": "Admin", "tenants": []}
    for headers in (bearer(operator), tenant.headers("all")):
        assert_error(client.get("/api/v1/tenants", headers=headers), 403)
        assert_error(client.post("/api/v1/tenants", headers=headers, json={"slug": "nope", "name": "n"}), 403)
        assert_error(client.get("/api/v1/users", headers=headers), 403)
        assert_error(client.post("/api/v1/users", headers=headers, json=user_body), 403)


def test_tenant_creation_rules(client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    assert_error(client.post("/api/v1/tenants", headers=bearer(admin_token),
                             json={"slug": tenant.slug, "name": "again"}), 409, "tenant_exists")
    for slug in ("Upper", "has.dot", "-lead", "", "x" * 64, 7):
        assert_error(client.post("/api/v1/tenants", headers=bearer(admin_token), json={"slug": slug, "name": "n"}),
                     422)
    listed = client.get("/api/v1/tenants?limit=1000", headers=bearer(admin_token)).get_json()
    assert tenant.slug in {t["slug"] for t in listed["items"]}


def test_user_creation_rules(client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    auth = bearer(admin_token)
    username = f"u-{uuid.uuid4().hex[:8]}"
    body = {"username": username, "password": PASSWORD, "role": "Viewer", "tenants": [tenant.slug]}
    created = client.post("/api/v1/users", headers=auth, json=body)
    assert created.status_code == 201
    out = created.get_json()
    assert out["roles"] == ["Viewer"] and out["tenants"] == [tenant.slug]
    assert PASSWORD not in created.get_data(as_text=True) and "password" not in out
    assert_error(client.post("/api/v1/users", headers=auth, json=body), 409, "user_exists")
    bad = [({"role": "Superuser"}, "unknown_role"), ({"tenants": ["no-such-tenant"]}, "unknown_tenant"),
           ({"password": "short"}, "weak_password"), ({"password": "password"}, "weak_password"),
           ({"tenants": []}, "tenants_required"), ({"username": "bad name!"}, "invalid_field")]
    for change, code in bad:
        fresh = {**body, "username": f"u-{uuid.uuid4().hex[:8]}", **change}
        assert_error(client.post("/api/v1/users", headers=auth, json=fresh), 422, code)
    listed = client.get("/api/v1/users?limit=1000", headers=auth).get_json()["items"]
    mine = next(u for u in listed if u["username"] == username)
    assert mine["roles"] == ["Viewer"] and mine["tenants"] == [tenant.slug]
    assert all("password" not in u for u in listed)


def test_secrets_are_stored_hashed(app: Flask, client: FlaskClient, admin_token: str, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import ApiKey

    created = new_key(client, tenant, ["publish"])
    username = make_user(client, admin_token, "Viewer", [tenant.slug])
    with app.app_context():
        rows = db.session.execute(select(ApiKey.__table__)).mappings().all()
        everything = repr([dict(r) for r in rows])
        for key in (*tenant.keys.values(), created["key"]):
            assert key not in everything
        row = db.session.get(ApiKey, created["id"])
        assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
        user = app.appbuilder.sm.find_user(username=username)
        assert user.password != PASSWORD and PASSWORD not in user.password
        assert user.password.startswith(("scrypt:", "pbkdf2:"))
