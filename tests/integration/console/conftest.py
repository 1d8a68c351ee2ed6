"""Console tests: a real app on SQLite and on PostgreSQL (SQL event log), users logged in through /login/."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.support.apps import TenantCtx
from tests.support.fixtures import app_on

ConsoleLogin = Callable[[str, TenantCtx], FlaskClient]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated application per database for the whole session."""
    yield from app_on(request.param, tmp_path_factory, WEBHOOK_ALLOW_PRIVATE=True)


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
