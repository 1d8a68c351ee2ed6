"""Session-wide fixtures: real PostgreSQL database and a real Kafka-protocol broker."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import postgres_database, tansu_broker

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database that lives for the test session."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a tansu broker that lives for the test session."""
    with tansu_broker() as bootstrap:
        yield bootstrap
