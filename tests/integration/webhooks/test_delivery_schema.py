"""The deliveries table as the dispatcher writes it: lean per row, yet every question about pending rows indexed.

A delivery row has no foreign keys (tenant, subscription), nor has an attempt row (delivery): triggers
delete a subscription's deliveries and a delivery's attempts, and a recording holds its subscription
until it commits. The due-time and key-status indexes only hold the rows that are retrying, waiting or
dead. These tests show that deliveries and attempts still go with their subscription (deleted itself,
or with its stream or tenant), that a recording racing a deletion leaves nothing behind, and that the
queries for pending rows still find their indexes.
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


def _attempt(app: Flask, sub_id: str) -> list[str]:
    """One attempt row for each of the subscription's deliveries; their delivery ids."""
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt
    from app.models.base import utcnow

    with app.app_context():
        ids = list(db.session.execute(select(Delivery.id).where(Delivery.subscription_id == sub_id)).scalars())
        db.session.execute(DeliveryAttempt.__table__.insert(), [
            {"delivery_id": i, "at": utcnow(), "duration_ms": 1.0, "status_code": 500} for i in ids])
        db.session.commit()
    return ids


def _left(app: Flask, sub_id: str, ids: list[str]) -> tuple[int, int]:
    """(deliveries of the subscription, attempts of ``ids``) still stored."""
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt

    with app.app_context():
        deliveries = db.session.execute(select(func.count()).select_from(Delivery).where(
            Delivery.subscription_id == sub_id)).scalar_one()
        attempts = db.session.execute(select(func.count()).select_from(DeliveryAttempt).where(
            DeliveryAttempt.delivery_id.in_(ids))).scalar_one()
        db.session.rollback()
    return deliveries, attempts


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
@pytest.mark.parametrize("deleted", ["tenant", "stream", "subscription"])
def test_deleting_a_subscription_or_what_owns_it_deletes_its_deliveries_and_attempts(
        app: Flask, bus: Bus, deleted: str) -> None:
    from app.extensions import db
    from app.models import Stream, Subscription

    tenant_id, sub_id = _seed(app, bus, ["succeeded", "dead", "retrying"])
    _, other_sub = _seed(app, bus, ["dead"])  # another subscription of the same tenant and kind
    ids, other_ids = _attempt(app, sub_id), _attempt(app, other_sub)
    assert len(ids) == 3 and _left(app, sub_id, ids) == (3, 3)
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        statement = {
            "tenant": text("DELETE FROM tenants WHERE id = :v").bindparams(v=tenant_id),
            "stream": text("DELETE FROM streams WHERE id = :v").bindparams(v=sub.stream_id),
            "subscription": text("DELETE FROM subscriptions WHERE id = :v").bindparams(v=sub_id),
        }[deleted]
        assert db.session.get(Stream, sub.stream_id) is not None
        db.session.execute(statement)
        db.session.commit()

    assert _left(app, sub_id, ids) == (0, 0)
    # subscription -> deliveries -> attempts by trigger, nothing more: the other subscription keeps its rows
    # unless the tenant itself went.
    assert _left(app, other_sub, other_ids) == ((0, 0) if deleted == "tenant" else (1, 1))
    if deleted == "tenant":
        bus.subscriptions.clear()  # gone with the tenant


def _settled_items(count: int) -> list[Any]:
    """Items as the dispatcher hands them to the recorder: sent, answered 200."""
    from app.bus.delivery import AttemptResult
    from app.models.base import utcnow
    from app.services.dispatch_record import Item

    items = []
    for n in range(count):
        item = Item(f"e-{n}", "order.created", None, 0, n, b"{}")
        item.result, item.at, item.attempts = AttemptResult(200, 1.0, "ok", None, None), utcnow(), 1
        item.status, item.kind = "succeeded", "success"
        items.append(item)
    return items


def _spec(app: Flask, sub_id: str) -> Any:
    from app.extensions import db
    from app.models import Subscription
    from app.services.dispatch_config import settings
    from app.services.dispatch_send import spec_of

    with app.app_context():
        return spec_of(db.session.get(Subscription, sub_id), settings(app.config))


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_a_recording_for_a_deleted_subscription_stores_nothing(app: Flask, bus: Bus) -> None:
    from app.extensions import db
    from app.services.dispatch_record import insert_new

    sub = bus.subscribe(bus.stream(partitions=1), "http://127.0.0.1:9/nowhere")
    spec = _spec(app, sub["id"])
    items = _settled_items(3)
    bus.api("DELETE", f"/subscriptions/{sub['id']}", status=204)
    with app.app_context():
        insert_new(spec, items)  # sent just before the deletion, recorded just after
        db.session.commit()
    assert _left(app, sub["id"], [i.delivery_id for i in items]) == (0, 0)


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_deletion_waits_for_a_recording_and_then_takes_its_rows_too(app: Flask, bus: Bus) -> None:
    # No foreign key checks each row any more: the recording's share lock on the subscription must make a
    # concurrent DELETE wait, and the DELETE's trigger must then see (and delete) the rows just committed.
    import threading
    import time

    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from app.extensions import db
    from app.services import dispatch_record
    from app.services.dispatch_record import insert_new

    sub = bus.subscribe(bus.stream(partitions=1), "http://127.0.0.1:9/nowhere")
    spec = _spec(app, sub["id"])
    items = _settled_items(5)
    other = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    outcome: list[int] = []

    def delete() -> None:
        with other.begin() as conn:
            outcome.append(conn.execute(text("DELETE FROM subscriptions WHERE id = :v"), {"v": sub["id"]}).rowcount)

    # As in the dispatcher's steady state: the subscription's success clock was written within the last
    # second, so this recording does not UPDATE (and so lock) the subscription row for that reason.
    dispatch_record._success_written[spec.id] = time.monotonic()
    with app.app_context():
        insert_new(spec, items, throttle_health=True)  # not committed yet: the subscription is held
        deleter = threading.Thread(target=delete)
        deleter.start()

        def waiting() -> bool:  # the DELETE is blocked on our lock (the server says so, no sleep-and-hope)
            with other.connect() as conn:
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'DELETE FROM subscriptions%'")).scalar_one())

        bus.wait(waiting, timeout=10, what="the DELETE to wait for the recording's lock")
        assert deleter.is_alive() and outcome == []
        db.session.commit()
    deleter.join(10)
    other.dispose()
    assert outcome == [1]
    assert _left(app, sub["id"], [i.delivery_id for i in items]) == (0, 0)
    bus.subscriptions.remove(sub["id"])


@pytest.mark.parametrize("app", ["postgresql", "sqlite"], indirect=True)
def test_retry_attempts_of_a_deleted_delivery_are_not_stored(app: Flask, bus: Bus) -> None:
    from app.extensions import db
    from app.models import Delivery
    from app.services.dispatch_record import update_existing

    _, sub_id = _seed(app, bus, ["retrying", "retrying"])
    spec = _spec(app, sub_id)
    with app.app_context():
        kept, gone = db.session.execute(select(Delivery.id).where(Delivery.subscription_id == sub_id)
                                        .order_by(Delivery.offset)).scalars().all()
        db.session.execute(text("DELETE FROM deliveries WHERE id = :v").bindparams(v=gone))  # e.g. a purge
        db.session.commit()
    items = _settled_items(2)
    items[0].delivery_id, items[1].delivery_id = kept, gone
    with app.app_context():
        assert update_existing(spec, items, only_status="retrying") == 1
        db.session.commit()
    assert _left(app, sub_id, [kept]) == (1, 1)
    assert _left(app, sub_id, [gone]) == (1, 0)


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
