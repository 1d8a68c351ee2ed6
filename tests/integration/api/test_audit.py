"""Every state-changing call leaves an audit record: actor, tenant, action, target, ip, time."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login


def records(app: Flask, **where: Any) -> list[Any]:
    """Audit records matching ``where`` (column == value), oldest first."""
    from app.extensions import db
    from app.models import AuditRecord

    with app.app_context():
        query = select(AuditRecord).order_by(AuditRecord.id)
        for column, value in where.items():
            query = query.where(getattr(AuditRecord, column) == value)
        rows = list(db.session.execute(query).scalars())
        db.session.expunge_all()
        return rows


def tenant_id(app: Flask, slug: str) -> int:
    """The id of tenant ``slug``."""
    from app.extensions import db
    from app.models import Tenant

    with app.app_context():
        return db.session.execute(select(Tenant.id).where(Tenant.slug == slug)).scalar_one()


def key_actor(app: Flask, key: str) -> str:
    """The audit actor of an API key: ``apikey:<id>``."""
    from app.extensions import db
    from app.models import ApiKey

    with app.app_context():
        key_id = db.session.execute(select(ApiKey.id).where(
            ApiKey.key_hash == hashlib.sha256(key.encode()).hexdigest())).scalar_one()
    return f"apikey:{key_id}"


def assert_record(row: Any, actor: str, tenant: int | None, action: str, target: str) -> None:
    """One record with every field an auditor needs."""
    assert (row.actor, row.tenant_id, row.action, row.target) == (actor, tenant, action, target)
    assert row.ip == "127.0.0.1" and row.at is not None and row.target_type


def test_stream_changes_are_audited(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    headers, name = tenant.headers("manage"), f"aud-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/streams", headers=headers, json={"name": name, "partitions": 1}).status_code == 201
    assert client.patch(f"/api/v1/streams/{name}", headers=headers,
                        json={"description": "d", "partitions": 2}).status_code == 200
    assert client.delete(f"/api/v1/streams/{name}", headers=headers).status_code == 204
    rows = records(app, target=name, target_type="stream")
    actor, tid = key_actor(app, tenant.keys["manage"]), tenant_id(app, tenant.slug)
    assert [r.action for r in rows] == ["stream.create", "stream.update", "stream.delete"]
    for row in rows:
        assert_record(row, actor, tid, row.action, name)
    assert rows[1].details["partitions"] == [1, 2]


def test_refused_calls_change_nothing_and_audit_nothing(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    name = f"aud-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/streams", headers=tenant.headers("publish"), json={"name": name}).status_code == 403
    assert records(app, target=name) == []


def test_api_key_create_and_revoke_are_audited(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    created = client.post("/api/v1/api-keys", headers=tenant.headers("all"),
                          json={"name": "audited", "scopes": ["consume"]}).get_json()
    assert client.delete(f"/api/v1/api-keys/{created['id']}", headers=tenant.headers("all")).status_code == 204
    rows = records(app, target=created["id"])
    actor, tid = key_actor(app, tenant.keys["all"]), tenant_id(app, tenant.slug)
    assert [r.action for r in rows] == ["api_key.create", "api_key.revoke"]
    for row in rows:
        assert_record(row, actor, tid, row.action, created["id"])
    assert rows[0].details == {"name": "audited", "scopes": ["consume"]}
    assert created["key"] not in repr([r.details for r in rows])


def test_admin_key_for_another_tenant_is_filed_under_that_tenant(app: Flask, client: FlaskClient,
                                                                 admin_token: str, tenant: TenantCtx) -> None:
    created = client.post("/api/v1/api-keys", headers={"Authorization": f"Bearer {admin_token}"},
                          json={"name": "by-admin", "scopes": ["publish"], "tenant": tenant.slug}).get_json()
    [row] = records(app, target=created["id"])
    assert_record(row, "admin", tenant_id(app, tenant.slug), "api_key.create", created["id"])


def test_tenant_and_user_creation_are_audited(app: Flask, client: FlaskClient, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    slug, username = f"aud-{uuid.uuid4().hex[:8]}", f"aud-{uuid.uuid4().hex[:8]}"
    assert client.post("/api/v1/tenants", headers=auth, json={"slug": slug, "name": "Audited"}).status_code == 201
    assert client.post("/api/v1/users", headers=auth, json={"username": username, "password": "long-enough-pw",
                                                            "role": "Viewer", "tenants": [slug]}).status_code == 201
    [tenant_row] = records(app, action="tenant.create", target=slug)
    assert_record(tenant_row, "admin", tenant_id(app, slug), "tenant.create", slug)
    [user_row] = records(app, action="user.create", target=username)
    assert_record(user_row, "admin", tenant_id(app, "default"), "user.create", username)
    assert user_row.details == {"role": "Viewer", "tenants": [slug]}
    assert "long-enough-pw" not in repr(user_row.details)


def test_sign_ins_are_audited_with_the_bus_security_manager(tmp_path: Path) -> None:
    from app.extensions import db
    from app.security_manager import BusSecurityManager
    from app.services.event_log import close_app_log

    app = build_app(f"sqlite:///{tmp_path / 'bus.db'}",
                    FAB_SECURITY_MANAGER_CLASS="app.security_manager.BusSecurityManager")
    try:
        assert isinstance(app.appbuilder.sm, BusSecurityManager)
        client = app.test_client()
        login(client, "admin", ADMIN_PASSWORD)
        resp = client.post("/api/v1/security/login", json={"username": "admin", "password": "nope", "provider": "db"})
        assert resp.status_code == 401
        rows = records(app, target="admin", target_type="user")
        assert [r.action for r in rows] == ["user.login", "user.login_failed"]
        for row in rows:
            assert_record(row, "admin", tenant_id(app, "default"), row.action, "admin")
    finally:
        close_app_log(app)
        with app.app_context():
            db.engine.dispose()
