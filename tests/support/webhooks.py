"""Helpers for webhook API tests: streams with subscriptions, delivery rows, a recording Celery."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.support.apps import TenantCtx

HOOK_URL = "http://127.0.0.1:9/hook"  # private: allowed by the test config (WEBHOOK_ALLOW_PRIVATE)


def make_subscription(client: FlaskClient, tenant: TenantCtx, **fields: Any) -> dict[str, Any]:
    """A new stream of ``tenant`` and a subscription of it; the answer to the create (with ``secret``)."""
    stream = fields.pop("stream", None)
    if stream is None:
        stream = f"wh-{uuid.uuid4().hex[:8]}"
        resp = client.post("/api/v1/streams", headers=tenant.headers(), json={"name": stream, "partitions": 2})
        assert resp.status_code == 201, resp.get_data(as_text=True)
    body = {"stream": stream, "url": HOOK_URL, **fields}
    resp = client.post("/api/v1/subscriptions", headers=tenant.headers(), json=body)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def tenant_id(app: Flask, slug: str) -> int:
    """The id of tenant ``slug``."""
    from app.extensions import db
    from app.models import Tenant

    with app.app_context():
        return db.session.execute(select(Tenant.id).where(Tenant.slug == slug)).scalar_one()


def add_delivery(app: Flask, subscription_id: str, status: str = "dead", attempts: int = 2,
                 age: timedelta = timedelta(0), event: dict[str, Any] | None = None,
                 offset: int = 0) -> str:
    """Insert a delivery with ``attempts`` attempts (the dispatcher's job, done by hand); its id."""
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt, Subscription

    at = datetime.now(UTC) - age
    event = event or {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "order.created",
                      "source": "/tests", "data": {"amount": 150}}
    with app.app_context():
        sub = db.session.get(Subscription, subscription_id)
        row = Delivery(tenant_id=sub.tenant_id, subscription_id=sub.id, event_id=event["id"],
                       event_type=event["type"], event_key="k1", partition=0, offset=offset, status=status,
                       attempts=attempts, last_status_code=500 if attempts else None,
                       last_error=None, body=orjson.dumps(event), created_at=at, updated_at=at)
        db.session.add(row)
        db.session.flush()
        for n in range(attempts):
            db.session.add(DeliveryAttempt(delivery_id=row.id, at=at + timedelta(seconds=n), duration_ms=12.5 + n,
                                           status_code=500 if n % 2 == 0 else None,
                                           response_excerpt="boom" if n % 2 == 0 else None,
                                           error=None if n % 2 == 0 else "connection refused"))
        db.session.commit()
        return row.id


@dataclass
class RecordingCelery:
    """Stands in for app.extensions["celery"]: records what would be sent, or fails like a dead broker."""

    fail: bool = False
    sent: list[tuple[str, list[Any]]] = field(default_factory=list)

    def send_task(self, name: str, args: list[Any] | None = None, **_: Any) -> None:
        """Record the task, or raise as kombu does when the broker is unreachable."""
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.sent.append((name, list(args or [])))


@contextmanager
def recording_celery(app: Flask, fail: bool = False) -> Iterator[RecordingCelery]:
    """Bind a RecordingCelery to ``app`` for the block, then put back whatever was bound."""
    missing = object()
    before = app.extensions.get("celery", missing)
    fake = RecordingCelery(fail=fail)
    app.extensions["celery"] = fake
    try:
        yield fake
    finally:
        if before is missing:
            app.extensions.pop("celery", None)
        else:
            app.extensions["celery"] = before
