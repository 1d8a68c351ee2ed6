"""Fixtures shared by the app-level suites (api, console, registry, webhooks), loaded from tests/conftest.py.

Each suite's conftest defines its own session ``app`` (with ``app_on``) so that suites never share
databases; the fixtures below work with whichever ``app`` the suite provides.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login, new_tenant
from tests.support.services import postgres_database


def close_app(application: Flask) -> None:
    """Release the app's event log and database connections."""
    from app.extensions import db
    from app.services.event_log import close_app_log
    from app.services.live_metrics import live

    metrics = live(application)
    if metrics is not None:
        metrics.stop()  # its last minute goes into this database now, not at exit into a dropped one
    close_app_log(application)
    with application.app_context():
        db.engine.dispose()


def app_on(database: str, tmp_path_factory: pytest.TempPathFactory, **overrides: Any) -> Iterator[Flask]:
    """A migrated, initialised app on a fresh SQLite file or PostgreSQL database, closed afterwards."""
    if database == "sqlite":
        path = tmp_path_factory.mktemp("bus") / "bus.db"
        application = build_app(f"sqlite:///{path}", **overrides)
        yield application
        close_app(application)
        return
    with postgres_database() as url:
        application = build_app(url, **overrides)
        application.config["TEST_DATABASE_URL"] = url
        yield application
        close_app(application)


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
    """A fresh tenant with keys for every scope, so tests never see each other's resources."""
    return new_tenant(client, admin_token)


@pytest.fixture
def other_tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """A second fresh tenant, for isolation checks."""
    return new_tenant(client, admin_token)
