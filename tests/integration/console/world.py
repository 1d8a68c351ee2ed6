"""A tenant with something on every console page (and a second tenant with its own), built through the API."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from tests.support.apps import TenantCtx

EVENTS = [
    {"type": "order.created", "key": "k1", "data": {"n": 0, "amount": 10}},
    {"type": "order.created", "key": "k2", "data": {"n": 1, "amount": 250}},
    {"type": "order.paid", "key": "k1", "data": {"n": 2, "amount": 10}},
    {"type": "order.created", "key": "k3", "data": {"n": 3, "amount": 990}},
    {"type": "invoice.sent", "key": "k2", "data": {"n": 4, "note": "needle"}},
    {"type": "order.paid", "key": "k3", "data": {"n": 5, "amount": 990}},
]
_ROW_RE = re.compile(r'class="event-row[^"]*" data-partition="(\d+)" data-offset="(\d+)"')


def api(client: FlaskClient, tenant: TenantCtx, method: str, path: str, body: Any = None,
        scope: str = "all", status: int | None = None) -> Any:
    """Call the REST API as the tenant; check the status when given; the JSON answer (or None)."""
    resp = client.open(f"/api/v1{path}", method=method, json=body, headers=tenant.headers(scope))
    if status is not None:
        assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json(silent=True)


def shown_events(html: str) -> list[tuple[int, int]]:
    """(partition, offset) of the event rows of an event-browser page, in page order."""
    return [(int(p), int(o)) for p, o in _ROW_RE.findall(html)]


def tenant_id(app: Flask, slug: str) -> int:
    """The database id of a tenant."""
    from app.extensions import db
    from app.models import Tenant

    with app.app_context():
        return db.session.execute(select(Tenant.id).where(Tenant.slug == slug)).scalar_one()


def add_dead_letters(app: Flask, slug: str, sub_id: str, count: int, etype: str = "order.created") -> list[str]:
    """Insert ``count`` dead letters of a subscription straight into the database (as the dispatcher would)."""
    from app.extensions import db
    from app.models import Delivery, DeliveryAttempt

    tid = tenant_id(app, slug)
    now = datetime.now(UTC)
    rows, attempts = [], []
    for i in range(count):
        delivery_id = str(uuid.uuid4())
        event = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": etype, "source": "/", "data": {"i": i}}
        at = now - timedelta(seconds=count - i)
        rows.append({"id": delivery_id, "tenant_id": tid, "subscription_id": sub_id, "event_id": event["id"],
                     "event_type": etype, "event_key": f"key-{i}", "partition": 0, "offset": i, "status": "dead",
                     "origin": "live", "attempts": 3, "last_status_code": 500, "last_error": None,
                     "body": orjson.dumps(event), "created_at": at, "updated_at": at})
        attempts.append({"delivery_id": delivery_id, "at": at, "duration_ms": 12.5, "status_code": 500,
                         "response_excerpt": "boom", "error": None})
    with app.app_context():
        db.session.execute(insert(Delivery), rows)
        db.session.execute(insert(DeliveryAttempt), attempts)
        db.session.commit()
    return [r["id"] for r in rows]


@dataclass
class World:
    """What the console tests look at: names and ids in the tenant and in another tenant."""

    tenant: TenantCtx
    other: TenantCtx
    stream: str
    their_stream: str
    group: str
    their_group: str
    sub_id: str
    their_sub: str
    dead: list[str] = field(default_factory=list)
    their_dead: list[str] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)


def build_world(app: Flask, client: FlaskClient, tenant: TenantCtx, other: TenantCtx, url: str) -> World:
    """Streams with events, a committed group, a subscription and dead letters in both tenants."""
    tag = uuid.uuid4().hex[:6]
    world = World(tenant=tenant, other=other, stream=f"orders-{tag}", their_stream=f"secret-{tag}",
                  group=f"billing-{tag}", their_group=f"spy-{tag}", sub_id="", their_sub="")
    for ctx, stream, group in ((tenant, world.stream, world.group), (other, world.their_stream, world.their_group)):
        api(client, ctx, "POST", "/streams", {"name": stream, "partitions": 2}, status=201)
        results = api(client, ctx, "POST", f"/streams/{stream}/events", {"events": EVENTS}, "publish", 201)["results"]
        if ctx is tenant:
            world.positions = results
        api(client, ctx, "POST", f"/streams/{stream}/groups/{group}/commit",
            {"offsets": [{"partition": 0, "offset": 1}, {"partition": 1, "offset": 1}]}, "consume", 204)
    world.sub_id = api(client, tenant, "POST", "/subscriptions", {"stream": world.stream, "url": url}, status=201)["id"]
    world.their_sub = api(client, other, "POST", "/subscriptions", {"stream": world.their_stream, "url": url},
                          status=201)["id"]
    world.dead = add_dead_letters(app, tenant.slug, world.sub_id, 3)
    world.their_dead = add_dead_letters(app, other.slug, world.their_sub, 2, etype="spy.event")
    return world
