"""Delivery-history retention: old succeeded/discarded deliveries and their attempts are purged, nothing else.

The session's databases are shared with the other webhook tests, so every purge here runs with ``now`` in 2001:
its cutoff is older than any row but the ones these tests write (real rows are never touched), and rows are
checked per subscription.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.integration.webhooks.conftest import Bus, bus_on

pytestmark = pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)

NOW = datetime(2001, 3, 1, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=30)  # the default DELIVERY_RETENTION_DAYS
OLD = NOW - timedelta(days=60)
RECENT = NOW - timedelta(days=1)


def _subscription(bus: Bus) -> tuple[int, str]:
    """A subscription of the bus's tenant that nobody delivers to: (tenant id, subscription id)."""
    from app.extensions import db
    from app.models import Subscription

    sub = bus.subscribe(bus.stream(partitions=1), "http://127.0.0.1:9/nowhere")
    with bus.app.app_context():
        tenant_id = db.session.get(Subscription, sub["id"]).tenant_id
        db.session.rollback()
    return tenant_id, sub["id"]


def _insert(app: Flask, tenant_id: int, sub_id: str, rows: list[tuple[str, datetime]],
            attempts: int = 2) -> list[str]:
    """Delivery rows (status, updated_at) with ``attempts`` attempt rows each, as the dispatcher writes them."""
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt
    from app.services.dispatch_copy import bulk_insert

    ids = [str(uuid.uuid4()) for _ in rows]
    deliveries = [{"id": ids[n], "tenant_id": tenant_id, "subscription_id": sub_id, "event_id": f"e-{ids[n]}",
                   "event_type": "order.created", "event_key": None, "partition": 0, "offset": n,
                   "status": status, "origin": "live", "attempts": attempts, "next_attempt_at": None,
                   "last_status_code": 200, "last_error": None, "body": None, "created_at": at - timedelta(hours=1),
                   "updated_at": at} for n, (status, at) in enumerate(rows)]
    tries = [{"delivery_id": ids[n], "at": at, "duration_ms": 1.5, "status_code": 200, "response_excerpt": "ok",
              "error": None} for n, (_status, at) in enumerate(rows) for _ in range(attempts)]
    with app.app_context():
        bulk_insert(Delivery.__table__, deliveries)
        bulk_insert(DeliveryAttempt.__table__, tries)
        db.session.commit()
    return ids


def _left(app: Flask, sub_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Delivery id -> (status, attempt rows) of the subscriptions' deliveries still stored."""
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt

    with app.app_context():
        found = db.session.execute(
            select(Delivery.id, Delivery.status, func.count(DeliveryAttempt.id))
            .outerjoin(DeliveryAttempt, DeliveryAttempt.delivery_id == Delivery.id)
            .where(Delivery.subscription_id.in_(sub_ids)).group_by(Delivery.id, Delivery.status)).all()
        db.session.rollback()
    return {row[0]: (row[1], row[2]) for row in found}


def _orphan_attempts(app: Flask, ids: list[str]) -> int:
    """Attempt rows still pointing at these delivery ids."""
    from app.extensions import db
    from app.models import DeliveryAttempt

    with app.app_context():
        count = db.session.execute(select(func.count()).select_from(DeliveryAttempt)
                                   .where(DeliveryAttempt.delivery_id.in_(ids))).scalar_one()
        db.session.rollback()
    return count


def _purge(app: Flask, chunk: int = 5000, budget_s: float = 20.0) -> int:
    from app.services.delivery_retention import purge_old_deliveries

    with app.app_context():
        return purge_old_deliveries(now=NOW, budget_s=budget_s, chunk=chunk)


@pytest.fixture
def other_bus(app: Flask) -> Iterator[Bus]:
    """A second tenant on the same app."""
    yield from bus_on(app)


def test_purges_old_succeeded_and_discarded_with_their_attempts_and_nothing_else(app: Flask, bus: Bus) -> None:
    tenant_id, sub_id = _subscription(bus)
    purged = _insert(app, tenant_id, sub_id, [("succeeded", OLD), ("succeeded", CUTOFF - timedelta(seconds=1)),
                                              ("discarded", OLD)])
    kept = _insert(app, tenant_id, sub_id, [("dead", OLD), ("retrying", OLD), ("waiting", OLD),
                                            ("succeeded", RECENT), ("discarded", RECENT),
                                            ("succeeded", CUTOFF)])  # exactly at the cutoff: not older
    assert _orphan_attempts(app, purged) == 6

    assert _purge(app) == 3

    left = _left(app, [sub_id])
    assert set(left) == set(kept)
    assert all(attempts == 2 for _status, attempts in left.values())  # kept rows keep their attempts
    assert _orphan_attempts(app, purged) == 0  # the purged rows' attempts went with them
    assert _purge(app) == 0  # nothing more to do


def test_purges_every_tenant(app: Flask, bus: Bus, other_bus: Bus) -> None:
    tenant_a, sub_a = _subscription(bus)
    tenant_b, sub_b = _subscription(other_bus)
    assert tenant_a != tenant_b
    old_a = _insert(app, tenant_a, sub_a, [("succeeded", OLD), ("discarded", OLD)])
    old_b = _insert(app, tenant_b, sub_b, [("succeeded", OLD)])
    kept = _insert(app, tenant_b, sub_b, [("dead", OLD), ("succeeded", RECENT)])

    assert _purge(app) == 3

    assert set(_left(app, [sub_a, sub_b])) == set(kept)
    assert _orphan_attempts(app, old_a + old_b) == 0


def test_deletes_in_chunks_until_done(app: Flask, bus: Bus) -> None:
    tenant_id, sub_id = _subscription(bus)
    old = _insert(app, tenant_id, sub_id, [("succeeded", OLD - timedelta(minutes=n)) for n in range(3)]
                  + [("discarded", OLD), ("discarded", OLD)])

    assert _purge(app, chunk=2) == 5  # 2 + 1 succeeded, 2 + 0 discarded: one call, several chunks

    assert _left(app, [sub_id]) == {}
    assert _orphan_attempts(app, old) == 0


def test_a_spent_budget_stops_after_one_chunk_and_the_next_run_continues(app: Flask, bus: Bus) -> None:
    tenant_id, sub_id = _subscription(bus)
    old = _insert(app, tenant_id, sub_id, [("succeeded", OLD - timedelta(minutes=n)) for n in range(5)])

    assert _purge(app, chunk=2, budget_s=0) == 2  # at least one chunk is always deleted, then the budget stops it
    assert len(_left(app, [sub_id])) == 3
    assert _purge(app, chunk=2, budget_s=0) == 2
    assert len(_left(app, [sub_id])) == 1
    assert _purge(app, chunk=2) == 1
    assert _left(app, [sub_id]) == {}
    assert _orphan_attempts(app, old) == 0


def test_retention_zero_disables_the_purge(app: Flask, bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant_id, sub_id = _subscription(bus)
    old = _insert(app, tenant_id, sub_id, [("succeeded", OLD), ("discarded", OLD)])

    monkeypatch.setitem(app.config, "DELIVERY_RETENTION_DAYS", 0)
    assert _purge(app) == 0
    assert set(_left(app, [sub_id])) == set(old)

    # A longer retention keeps them too; the default (30 days) purges them.
    monkeypatch.setitem(app.config, "DELIVERY_RETENTION_DAYS", 90)
    assert _purge(app) == 0
    monkeypatch.setitem(app.config, "DELIVERY_RETENTION_DAYS", 30)
    assert _purge(app) == 2
    assert _left(app, [sub_id]) == {}


def test_the_task_is_registered_scheduled_and_purges(app: Flask, bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.extensions import celery
    from workers import init_celery

    init_celery(app)
    celery.loader.import_default_modules()
    assert "maintenance.purge_deliveries" in celery.tasks
    entry = celery.conf.beat_schedule["maintenance.purge_deliveries"]
    assert entry["task"] == "maintenance.purge_deliveries"
    assert entry["schedule"].total_seconds() == 600

    # Called as a worker would (the task pushes the app context), with the real clock: rows from 2001 are old.
    tenant_id, sub_id = _subscription(bus)
    old = _insert(app, tenant_id, sub_id, [("succeeded", OLD), ("discarded", OLD)])
    kept = _insert(app, tenant_id, sub_id, [("dead", OLD)])
    monkeypatch.setitem(app.config, "DELIVERY_RETENTION_DAYS", 0)
    assert celery.tasks["maintenance.purge_deliveries"].apply().get() == 0
    monkeypatch.setitem(app.config, "DELIVERY_RETENTION_DAYS", 30)
    assert celery.tasks["maintenance.purge_deliveries"].apply().get() >= 2
    assert set(_left(app, [sub_id])) == set(kept)
    assert _orphan_attempts(app, old) == 0
