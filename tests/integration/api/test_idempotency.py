"""Idempotency-Key on publish: replay, reuse with another body, scope, expiry, abandoned claims, races, failures."""
from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from tests.integration.api.test_events import error, events, highs, make_stream, publish
from tests.support.apps import TenantCtx


def test_idempotency_key_replays_the_first_response(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    body = {"events": events(3)}
    first = publish(client, tenant, stream, body, **{"Idempotency-Key": "order-42"})
    assert first.status_code == 201
    marks = highs(client, tenant, stream)
    # Same body, even re-serialised with other key order: the first response, nothing appended.
    again = client.post(f"/api/v1/streams/{stream}/events",
                        data=b'{"events":[{"data":{"i":0},"type":"order.created"},{"data":{"i":1},'
                             b'"type":"order.created"},{"type":"order.created","data":{"i":2}}]}',
                        content_type="application/json",
                        headers={**tenant.headers("publish"), "Idempotency-Key": "order-42"})
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert highs(client, tenant, stream) == marks
    # Another body with the same key: refused, nothing appended.
    error(publish(client, tenant, stream, {"events": events(4)}, **{"Idempotency-Key": "order-42"}), 422,
          "idempotency_key_reused")
    assert highs(client, tenant, stream) == marks
    # The key is scoped to the stream and the tenant.
    other = make_stream(client, tenant)
    assert publish(client, tenant, other, body, **{"Idempotency-Key": "order-42"}).status_code == 201
    assert sum(highs(client, tenant, other)) == 3


def test_idempotency_key_is_per_tenant(client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    name = f"s-{uuid.uuid4().hex[:8]}"
    make_stream(client, tenant, name=name)
    make_stream(client, other_tenant, name=name)
    one = publish(client, tenant, name, {"type": "a", "data": 1}, **{"Idempotency-Key": "k"})
    two = publish(client, other_tenant, name, {"type": "a", "data": 2}, **{"Idempotency-Key": "k"})
    assert one.status_code == two.status_code == 201
    assert sum(highs(client, other_tenant, name)) == 1


def test_bad_idempotency_keys(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    for key in ("x" * 256, "caf\u00e9"):
        headers = {**tenant.headers("publish"), "Idempotency-Key": key}
        error(client.post(f"/api/v1/streams/{stream}/events", json={"type": "a", "data": 1}, headers=headers), 400,
              "invalid_idempotency_key")
    assert highs(client, tenant, stream) == [0, 0, 0]


def _record(tenant: TenantCtx, stream: str, key: str) -> Any:
    from app.extensions import db
    from app.models import IdempotencyRecord, Tenant

    tenant_id = db.session.execute(select(Tenant.id).where(Tenant.slug == tenant.slug)).scalar_one()
    return tenant_id, (IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == f"publish:{stream}",
                       IdempotencyRecord.key == key)


def test_expired_and_abandoned_keys_run_again_and_purge(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import db
    from app.models import IdempotencyRecord
    from app.services import idempotency

    stream = make_stream(client, tenant)
    body = {"type": "a", "data": 1}
    assert publish(client, tenant, stream, body, **{"Idempotency-Key": "old"}).status_code == 201
    with app.app_context():
        _, where = _record(tenant, stream, "old")
        long_ago = datetime.now(UTC) - timedelta(seconds=app.config["IDEMPOTENCY_TTL_S"] + 60)
        db.session.execute(update(IdempotencyRecord).where(*where).values(created_at=long_ago))
        db.session.commit()
    # Expired: ignored, so even another body runs.
    assert publish(client, tenant, stream, {"type": "b", "data": 2}, **{"Idempotency-Key": "old"}).status_code == 201
    assert sum(highs(client, tenant, stream)) == 2

    # A pending claim (a request in flight) answers 409 with Retry-After; once abandoned, a retry runs.
    with app.app_context():
        tenant_id, where = _record(tenant, stream, "inflight")
        db.session.add(IdempotencyRecord(tenant_id=tenant_id, scope=f"publish:{stream}", key="inflight",
                                         request_hash=idempotency.request_hash(body), status=idempotency.PENDING,
                                         body=b"pending:someone-else"))
        db.session.commit()
    resp = publish(client, tenant, stream, body, **{"Idempotency-Key": "inflight"})
    error(resp, 409, "idempotency_key_in_progress")
    assert resp.headers["Retry-After"] == "1"
    with app.app_context():
        stale = datetime.now(UTC) - timedelta(seconds=idempotency.PENDING_LEASE_S + 5)
        db.session.execute(update(IdempotencyRecord).where(*where).values(created_at=stale))
        db.session.commit()
    first = publish(client, tenant, stream, body, **{"Idempotency-Key": "inflight"})
    assert first.status_code == 201
    assert publish(client, tenant, stream, body, **{"Idempotency-Key": "inflight"}).get_json() == first.get_json()
    assert sum(highs(client, tenant, stream)) == 3

    with app.app_context():
        _, where = _record(tenant, stream, "inflight")
        db.session.execute(update(IdempotencyRecord).where(*where).values(created_at=long_ago))
        db.session.commit()
        assert idempotency.purge_expired() >= 1
        assert db.session.execute(select(IdempotencyRecord).where(*where)).first() is None


def test_concurrent_requests_with_one_key_append_once(app: Flask, tenant: TenantCtx) -> None:
    client = app.test_client()
    stream = make_stream(client, tenant)
    body = {"events": events(5)}
    statuses: list[int] = []
    bodies: list[Any] = []
    start = threading.Barrier(8)

    def send() -> None:
        local = app.test_client()
        start.wait()
        resp = publish(local, tenant, stream, body, **{"Idempotency-Key": "race"})
        statuses.append(resp.status_code)
        if resp.status_code == 201:
            bodies.append(resp.get_json())

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    assert all(b == bodies[0] for b in bodies)
    assert sum(highs(client, tenant, stream)) == 5


def test_append_failure_is_503_and_releases_the_key(app: Flask, client: FlaskClient, tenant: TenantCtx,
                                                     monkeypatch: Any) -> None:
    from app.bus.log import LogError
    from app.services.event_log import open_app_log

    stream = make_stream(client, tenant)
    log = open_app_log(app)

    def broken(_stream: str, _events: Any) -> Any:
        raise LogError("broker down")

    monkeypatch.setattr(log, "append", broken)
    resp = publish(client, tenant, stream, {"type": "a", "data": 1}, **{"Idempotency-Key": "retry-me"})
    error(resp, 503, "event_log_unavailable")
    assert resp.headers["Retry-After"] == "1"
    monkeypatch.undo()
    # The failed attempt claimed nothing: the retry appends, and later retries replay it.
    first = publish(client, tenant, stream, {"type": "a", "data": 1}, **{"Idempotency-Key": "retry-me"})
    assert first.status_code == 201
    again = publish(client, tenant, stream, {"type": "a", "data": 1}, **{"Idempotency-Key": "retry-me"})
    assert again.get_json() == first.get_json()
    assert sum(highs(client, tenant, stream)) == 1
