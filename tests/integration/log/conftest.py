"""The conformance suite runs every test here against SQLite, PostgreSQL and a Kafka-protocol broker."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bus.log import EventLog, open_log


def _sql_schema(url: str) -> None:
    # Tests may create tables directly; the app itself only ever migrates with Alembic.
    import sqlalchemy as sa

    from app.bus.log.sql_schema import metadata

    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "kafka"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Name of the backend under test."""
    return request.param


@pytest.fixture
def log_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An EVENT_LOG_URL for the backend, with the SQL schema in place."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
        _sql_schema(url)
        return url
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        _sql_schema(url)
        return url
    return "kafka://" + request.getfixturevalue("kafka_bootstrap")


@pytest.fixture
def event_log(log_url: str) -> Iterator[EventLog]:
    """An open event log of the backend under test."""
    log = open_log(log_url)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def stream_name() -> str:
    """A fresh, fully qualified stream name (tenant.stream), so tests never share a stream."""
    return f"t{uuid.uuid4().hex[:8]}.s{uuid.uuid4().hex[:8]}"
