"""Build a migrated, initialised application for tests, and helpers to act as its users."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

ADMIN_PASSWORD = "admin-test-password"


def build_app(database_url: str, event_log_url: str = "sql", **overrides: Any) -> Flask:
    """A TestingConfig app on ``database_url``, migrated with Alembic and initialised like `make run`."""
    from flask_migrate import upgrade

    from app import create_app
    from app.services.bootstrap import init_bus

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_url, "EVENT_LOG_URL": event_log_url,
                                 **overrides})
    with app.app_context():
        upgrade()
        init_bus(ADMIN_PASSWORD)
    return app


def login(client: FlaskClient, username: str, password: str) -> str:
    """A JWT from FAB's login endpoint."""
    resp = client.post("/api/v1/security/login",
                       json={"username": username, "password": password, "provider": "db"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["access_token"]


@dataclass
class TenantCtx:
    """A fresh tenant with one API key per scope, for a test to act in."""

    slug: str
    keys: dict[str, str]

    def headers(self, scope: str = "manage") -> dict[str, str]:
        """Authorization headers with the key of ``scope`` (or ``all``: every scope)."""
        return {"Authorization": f"Bearer {self.keys[scope]}"}


def new_tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """Create a tenant and API keys (publish, consume, manage, all) through the API, as an Admin."""
    slug = f"t-{uuid.uuid4().hex[:10]}"
    auth = {"Authorization": f"Bearer {admin_token}"}
    resp = client.post("/api/v1/tenants", json={"slug": slug, "name": slug}, headers=auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    keys: dict[str, str] = {}
    for name, scopes in (("publish", ["publish"]), ("consume", ["consume"]), ("manage", ["manage"]),
                         ("all", ["publish", "consume", "manage"])):
        resp = client.post("/api/v1/api-keys", json={"name": name, "scopes": scopes, "tenant": slug},
                           headers=auth)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        keys[name] = resp.get_json()["key"]
    return TenantCtx(slug=slug, keys=keys)
