"""The deliveries table as the dispatcher writes it: lean per row, yet every question about pending rows indexed.

A delivery row has no foreign key to its tenant (its subscription's key cascades from the tenant), and the
due-time and key-status indexes only hold the rows that are retrying, waiting or dead. These tests show that
a tenant's deliveries still go with it, and that the queries for pending rows still find their indexes.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select, text

from tests.integration.webhooks.conftest import Bus


def _delivery_rows(tenant_id: int, sub_id: str, statuses: list[str]) -> list[dict[str, Any]]:
    from app.models.base import new_id, utcnow

    now = utcnow()
    return [{"id": new_id(), "tenant_id": tenant_id, "subscription_id": sub_id, "event_id": f"e-{n}",
             "event_type": "order.created", "event_key": f"k{n % 3}", "partition": 0, "offset": n, "status": status,
             "origin": "live", "attempts": 1, "next_attempt_at": now - timedelta(seconds=1) if status == "retrying"
             else None, "last_status_code": 500, "last_error": None, "body": b"{}", "created_at": now,
             "updated_at": now} for n, status in enumerate(statuses)]


def _seed(app: Flask, bus: Bus, statuses: list[str]) -> tuple[int, str]:
    """A subscription of the bus's tenant nobody delivers to, with deliveries in ``statuses``: (tenant, sub)."""
    from app.extensions import db
    from app.models import Delivery, Subscription
    from app.services.dispatch_copy import bulk_insert

    sub = bus.subscribe(bus.stream(partitions=1), "http://127.0.0.1:9/nowhere", ordered=True)
    with app.app_context():
        tenant_id = db.session.get(Subscription, sub["id"]).tenant_id
        bulk_insert(Delivery.__table__, _delivery_rows(tenant_id, sub["id"], statuses))
        db.session.commit()
    return tenant_id, sub["id"]


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_deleting_a_tenant_still_deletes_its_deliveries_and_attempts(app: Flask, bus: Bus) -> None:
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt
    from app.models.base import utcnow

    tenant_id, sub_id = _seed(app, bus, ["succeeded", "dead", "retrying"])
    with app.app_context():
        ids = list(db.session.execute(select(Delivery.id).where(Delivery.subscription_id == sub_id)).scalars())
        db.session.execute(DeliveryAttempt.__table__.insert(), [
            {"delivery_id": i, "at": utcnow(), "duration_ms": 1.0, "status_code": 500} for i in ids])
        db.session.commit()
        assert len(ids) == 3

        db.session.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": tenant_id})
        db.session.commit()

        # tenant -> subscriptions -> deliveries -> attempts, each ON DELETE CASCADE
        left = db.session.execute(select(func.count()).select_from(Delivery).where(
            Delivery.tenant_id == tenant_id)).scalar_one()
        attempts = db.session.execute(select(func.count()).select_from(DeliveryAttempt).where(
            DeliveryAttempt.delivery_id.in_(ids))).scalar_one()
        db.session.rollback()
    assert (left, attempts) == (0, 0)
    bus.subscriptions.clear()  # gone with the tenant


@contextmanager
def _statements(app: Flask) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and parameters) the app's engine runs meanwhile."""
    from app.extensions import db

    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def _plan(app: Flask, statement: str, parameters: Any) -> str:
    """PostgreSQL's plan of a captured statement, with fresh statistics and a sequential scan as the last resort."""
    from app.extensions import db

    with app.app_context():
        cursor = db.session.connection().connection.driver_connection.cursor()
        try:
            cursor.execute("ANALYZE deliveries")  # statistics as of now: the other tests' rows are mostly delivered
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, parameters)  # the app's own statement, its own parameters
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.close()
            db.session.rollback()
    return plan


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_the_queries_for_pending_deliveries_use_the_partial_indexes(app: Flask, bus: Bus) -> None:
    from app.services.dispatch_batch import blocked_keys
    from app.services.retries import claim_due, release_waiting

    _tenant, sub_id = _seed(app, bus, ["succeeded"] * 50 + ["retrying", "waiting", "dead"])
    with _statements(app) as seen, app.app_context():
        assert blocked_keys(sub_id, ["k0", "k1", "k2"]) == {"k0", "k1", "k2"}  # retrying, waiting, dead
        claim_due(10, 30.0)
        release_waiting()

    def plan_of(marker: str) -> str:
        found = [(s, p) for s, p in seen if marker in s]
        assert found, f"no statement with {marker!r} ran"
        return _plan(app, *found[0])

    assert "ix_deliveries_sub_key_status" in plan_of("SELECT DISTINCT deliveries.event_key")
    due_plan = plan_of("UPDATE deliveries SET next_attempt_at")
    assert "ix_deliveries_due" in due_plan
    assert "ix_deliveries_sub_key_status" in plan_of("WHERE deliveries.status = %(status_1)s AND NOT (EXISTS")
