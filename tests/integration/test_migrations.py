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


_SEED = [  # a tenant's subscription with one delivery and one attempt, as of revision 29282275221b
    "INSERT INTO tenants (id, slug, name, created_at) VALUES (7, 't7', 't7', '2026-01-01')",
    "INSERT INTO streams (id, tenant_id, name, partitions, created_at, updated_at) "
    "VALUES ('st7', 7, 's', 1, '2026-01-01', '2026-01-01')",
    "INSERT INTO subscriptions (id, tenant_id, stream_id, url, ordered, max_in_flight, status, secrets, created_at, "
    "updated_at) VALUES ('sub7', 7, 'st7', 'http://x', false, 10, 'active', '[]', '2026-01-01', '2026-01-01')",
    "INSERT INTO deliveries (id, tenant_id, subscription_id, event_id, event_type, partition, \"offset\", status, "
    "origin, attempts, created_at, updated_at) VALUES ('d7', 7, 'sub7', 'e7', 't', 0, 0, 'dead', 'live', 1, "
    "'2026-01-01', '2026-01-01')",
    "INSERT INTO delivery_attempts (delivery_id, at, duration_ms) VALUES ('d7', '2026-01-01', 1.5)",
]


def _upgrade_keeps_rows(url: str) -> tuple[int, int]:
    """Migrate to 29282275221b, seed a delivery and its attempt, migrate to the head: (deliveries, attempts)."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app

    application = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url})
    with application.app_context():
        upgrade(revision="29282275221b")
        with db.engine.begin() as conn:
            for statement in _SEED:
                conn.execute(text(statement))
        upgrade()  # the later ones rebuild deliveries and delivery_attempts (SQLite: copy, drop, rename)
        with db.engine.connect() as conn:
            counts = (conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one(),
                      conn.execute(text("SELECT count(*) FROM delivery_attempts")).scalar_one())
        db.engine.dispose()
    return counts


def test_sqlite_upgrades_keep_deliveries_and_their_attempts(tmp_path: Path) -> None:
    # Dropping the old copy of a rebuilt table with foreign keys on deleted the rows that referenced it
    # (ON DELETE CASCADE): migrations/env.py turns them off for the migration.
    assert _upgrade_keeps_rows(f"sqlite:///{tmp_path / 'u.db'}") == (1, 1)


def test_postgresql_upgrades_keep_deliveries_and_their_attempts() -> None:
    with postgres_database() as url:
        assert _upgrade_keeps_rows(url) == (1, 1)
