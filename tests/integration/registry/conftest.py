"""Registry tests: a migrated app per database, served over real HTTP for Confluent's own client."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from flask import Flask

from tests.support.apps import TenantCtx
from tests.support.fixtures import app_on
from tests.support.live_server import live_server

V1 = "application/vnd.schemaregistry.v1+json"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated application per database for the whole session."""
    yield from app_on(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def base_url(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a free loopback port."""
    with live_server(app) as url:
        yield url










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
