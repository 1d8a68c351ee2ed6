"""Registry tests: a migrated app per database, served over real HTTP for Confluent's own client."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from flask import Flask
from flask.testing import FlaskClient

from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login, new_tenant
from tests.support.live_server import live_server
from tests.support.services import postgres_database

V1 = "application/vnd.schemaregistry.v1+json"


def _close(application: Flask) -> None:
    from app.extensions import db
    from app.services.event_log import close_app_log

    close_app_log(application)
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated application per database for the whole session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("registry") / "bus.db"
        application = build_app(f"sqlite:///{path}")
        yield application
        _close(application)
    else:
        with postgres_database() as url:
            application = build_app(url)
            yield application
            _close(application)


@pytest.fixture(scope="session")
def base_url(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free loopback port."""
    with live_server(app) as url:
        yield url


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
    """A fresh tenant with keys for every scope."""
    return new_tenant(client, admin_token)


@pytest.fixture
def other_tenant(client: FlaskClient, admin_token: str) -> TenantCtx:
    """A second fresh tenant, for isolation checks."""
    return new_tenant(client, admin_token)


def registry_client(base_url: str, key: str) -> SchemaRegistryClient:
    """Confluent's client, authenticating as its users do: basic.auth.user.info with the API key as password."""
    return SchemaRegistryClient({"url": f"{base_url}/registry", "basic.auth.user.info": f"key:{key}",
                                 "max.retries": 0})


@pytest.fixture
def sr(base_url: str, tenant: TenantCtx) -> Iterator[SchemaRegistryClient]:
    """A registry client of ``tenant`` with every scope."""
    client = registry_client(base_url, tenant.keys["all"])
    yield client
    client.close()
