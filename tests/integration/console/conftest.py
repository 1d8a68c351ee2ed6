"""Console tests: a real app on SQLite and on PostgreSQL (SQL event log), users logged in through /login/."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login, new_tenant
from tests.support.services import postgres_database

ConsoleLogin = Callable[[str, TenantCtx], FlaskClient]


def close_app(application: Flask) -> None:
    """Release the app's event log and database connections."""
    from app.extensions import db
    from app.services.event_log import close_app_log

    close_app_log(application)
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated application per database for the whole session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("console") / "bus.db"
        application = build_app(f"sqlite:///{path}", WEBHOOK_ALLOW_PRIVATE=True)
        yield application
        close_app(application)
    else:
        with postgres_database() as url:
            application = build_app(url, WEBHOOK_ALLOW_PRIVATE=True)
            yield application
            close_app(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app (for API calls)."""
    return app.test_client()


@pytest.fixture
def admin_token(client: FlaskClient) -> str:
    """A JWT of user admin."""
    return login(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
def tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """A fresh tenant with keys for every scope."""
    return new_tenant(client, admin_token)


@pytest.fixture
def other_tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """A second fresh tenant, for isolation checks."""
    return new_tenant(client, admin_token)


@pytest.fixture
def console_login(app: Flask, client: FlaskClient, admin_token: str) -> ConsoleLogin:
    """``console_login(role, tenant)``: a browser-like client of a new user of that role, signed in at /login/."""

    def sign_in(role: str, tenant: TenantCtx) -> FlaskClient:
        username = make_user(client, admin_token, role, [tenant.slug])
        browser = app.test_client()
        resp = browser.post("/login/", data={"username": username, "password": PASSWORD})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        browser.username = username  # type: ignore[attr-defined]  # for audit assertions
        return browser

    return sign_in
