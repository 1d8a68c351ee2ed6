"""API tests run against a real app on SQLite and on PostgreSQL (SQL event log), each migrated once."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login, new_tenant
from tests.support.services import postgres_database


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated application per database for the whole session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("api") / "bus.db"
        application = build_app(f"sqlite:///{path}")
        yield application
        _close(application)
    else:
        with postgres_database() as url:
            application = build_app(url)
            yield application
            _close(application)


def _close(application: Flask) -> None:
    from app.extensions import db
    from app.services.event_log import close_app_log

    close_app_log(application)
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def admin_token(client: FlaskClient) -> str:
    """A JWT of user admin."""
    return login(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
def tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """A fresh tenant with keys for every scope, so tests never see each other's streams."""
    return new_tenant(client, admin_token)


@pytest.fixture
def other_tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """A second fresh tenant, for isolation checks."""
    return new_tenant(client, admin_token)
