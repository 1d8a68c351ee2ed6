"""API tests run against a real app on SQLite and on PostgreSQL (SQL event log), each migrated once."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from tests.support.fixtures import app_on


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One migrated application per database for the whole session."""
    yield from app_on(request.param, tmp_path_factory)
