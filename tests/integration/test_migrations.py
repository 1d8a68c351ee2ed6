"""Every table comes from an Alembic migration: after `db upgrade` the schema equals the models."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_appbuilder import Model

import app.models  # noqa: F401  (registers the models)
from app.bus.log.sql_schema import metadata as log_metadata
from app.extensions import db
from tests.support.apps import build_app
from tests.support.services import postgres_database


def _diff(url: str) -> list[object]:
    application = build_app(url)
    with application.app_context():
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, [Model.metadata, log_metadata])
        db.engine.dispose()
    return diff


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    assert _diff(f"sqlite:///{tmp_path / 'm.db'}") == []


def test_postgresql_schema_matches_models() -> None:
    with postgres_database() as url:
        assert _diff(url) == []
