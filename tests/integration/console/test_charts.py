"""History charts: a group's lag (sampled into the roll-ups) and a subscription's attempts, success rate and latency."""
from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert

from tests.integration.console.conftest import ConsoleLogin
from tests.integration.console.world import EVENTS, api, tenant_id
from tests.support.apps import TenantCtx
from tests.support.receiver import fail, ok, receiver


def _stream_with_group(client: FlaskClient, tenant: TenantCtx, committed: int) -> tuple[str, str]:
    """A 2-partition stream with the world's six events and a group committed at ``committed`` on both."""
    stream, group = f"orders-{uuid.uuid4().hex[:6]}", f"billing-{uuid.uuid4().hex[:6]}"
    api(client, tenant, "POST", "/streams", {"name": stream, "partitions": 2}, status=201)
    api(client, tenant, "POST", f"/streams/{stream}/events", {"events": EVENTS}, "publish", 201)
    _commit(client, tenant, stream, group, committed)
    return stream, group


def _commit(client: FlaskClient, tenant: TenantCtx, stream: str, group: str, offset: int) -> None:
    api(client, tenant, "POST", f"/streams/{stream}/groups/{group}/commit",
        {"offsets": [{"partition": 0, "offset": offset}, {"partition": 1, "offset": offset}]}, "consume", 204)


def test_lag_of_every_group_is_read_in_bulk_exactly_as_the_log_reports_it(
        app: Flask, client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    from app.services import metric_gauges

    mine = [_stream_with_group(client, tenant, c) for c in (0, 1, 2)]
    theirs = _stream_with_group(client, other_tenant, 0)
    tenants = {tenant_id(app, t.slug): t.slug for t in (tenant, other_tenant)}
    with app.app_context():
        bulk = metric_gauges.lag_by_tenant(tenants)  # the SQL log in the app database: the bulk path
        names = {tid: set() for tid in tenants}
        for tid, slug in tenants.items():
            names[tid] = {s for s, _ in (mine if slug == tenant.slug else [theirs])}
        one_by_one = metric_gauges._lag_from_protocol(tenants, names)
    me, them = tenant_id(app, tenant.slug), tenant_id(app, other_tenant.slug)
    assert bulk == one_by_one
    # Six events over two partitions; a group committed at c on both lags 6 - 2c.
    assert {f"{s}/{g}": 6 - 2 * c for (s, g), c in zip(mine, (0, 1, 2), strict=True)}.items() <= bulk[me].items()
    assert bulk[them] == {f"{theirs[0]}/{theirs[1]}": 6}


def test_the_group_page_charts_the_sampled_lag_and_the_lag_now(
        app: Flask, client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx,
        console_login: ConsoleLogin) -> None:
    from app.services import metric_rollups

    stream, group = _stream_with_group(client, tenant, 0)
    now = time.time()
    with app.app_context():
        for ago in (720, 660, 600):  # beat's minutes, ten to twelve minutes ago: lag 6
            metric_rollups.sample_gauges(now - ago)
    _commit(client, tenant, stream, group, 2)  # lag 2 now
    viewer = console_login("Viewer", tenant)
    body = viewer.get(f"/console/groups/{stream}/{group}/history").get_json()
    sampled = {int(metric_rollups.minute_of(now - ago).timestamp()) * 1000 for ago in (720, 660, 600)}
    assert {t: v for t, v in body["points"] if v is not None} == dict.fromkeys(sampled, 6)
    assert body["now"][1] == 2 and body["current"]["lag"] == 2
    assert len(body["current"]["partitions"]) == 2 and sum(p["lag"] for p in body["current"]["partitions"]) == 2
    assert body["bucket_s"] == 60 and len(body["points"]) == 60  # the last hour, the current minute included
    # A day reads every third minute's sample: one of three consecutive minutes is seen.
    day = viewer.get(f"/console/groups/{stream}/{group}/history?range=24h").get_json()
    assert day["bucket_s"] == 900 and max(v or 0 for _, v in day["points"]) == 6

    page = viewer.get(f"/console/groups/{stream}/{group}").get_data(as_text=True)
    assert 'id="chart-lag-history"' in page and 'id="history-data"' in page
    assert viewer.get(f"/console/groups/{stream}/{group}/history?range=3y").status_code == 422
    # Another tenant's group is not found from here, by page or by JSON.
    their_stream, their_group = _stream_with_group(client, other_tenant, 0)
    assert viewer.get(f"/console/groups/{their_stream}/{their_group}/history").status_code == 404


def _retrying(app: Flask, slug: str, sub_id: str, count: int) -> None:
    """Deliveries due for a retry now, as the dispatcher leaves them after a failed first attempt."""
    from app.extensions import db
    from app.models import Delivery

    tid = tenant_id(app, slug)
    past = datetime.now(UTC) - timedelta(seconds=5)
    rows = []
    for i in range(count):
        event = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "order.created", "source": "/",
                 "data": {"i": i}}
        rows.append({"id": str(uuid.uuid4()), "tenant_id": tid, "subscription_id": sub_id, "event_id": event["id"],
                     "event_type": "order.created", "event_key": None, "partition": 0, "offset": i,
                     "status": "retrying", "origin": "live", "attempts": 1, "next_attempt_at": past,
                     "body": orjson.dumps(event), "created_at": past, "updated_at": past})
    with app.app_context():
        db.session.execute(insert(Delivery), rows)
        db.session.commit()


def test_the_subscription_page_charts_attempts_success_rate_and_latency(
        app: Flask, client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx,
        console_login: ConsoleLogin) -> None:
    from app.services import metric_rollups, retries
    from app.services.live_metrics import SUB_FAILED, SUB_LATENCY_MS, SUB_OK

    stream = f"orders-{uuid.uuid4().hex[:6]}"
    api(client, tenant, "POST", "/streams", {"name": stream, "partitions": 1}, status=201)
    with receiver() as hooks:
        hooks.script("/hook", fail(500), ok())  # the first attempt fails, the others succeed
        sub_id = api(client, tenant, "POST", "/subscriptions", {"stream": stream, "url": hooks.url("/hook")},
                     status=201)["id"]
        # An older minute, flushed into the roll-ups by some process: 8 succeeded, 2 failed, 500 ms in all.
        older = (int(time.time()) // 60 - 10) * 60
        with app.app_context():
            metric_rollups.add_counts({older: Counter({(tenant.slug, SUB_OK, sub_id): 8,
                                                       (tenant.slug, SUB_FAILED, sub_id): 2,
                                                       (tenant.slug, SUB_LATENCY_MS, sub_id): 500.0})})
        # Now, real attempts over HTTP: two retries, one answered 500 and one 200.
        _retrying(app, tenant.slug, sub_id, 2)
        with app.app_context():
            assert retries.retry_due() == 2
        assert len(hooks.requests("/hook")) == 2

    viewer = console_login("Viewer", tenant)
    body = viewer.get(f"/console/subscriptions/{sub_id}/history").get_json()
    by_t = {p["t"]: p for p in body["points"]}
    assert by_t[older * 1000] == {"t": older * 1000, "ok": 8, "failed": 2, "success_rate": 80.0, "latency_ms": 50.0}
    recent = [p for p in body["points"] if p["t"] > older * 1000 and p["ok"] + p["failed"]]
    assert sum(p["ok"] for p in recent) == 1 and sum(p["failed"] for p in recent) == 1  # from the live counts
    assert all(p["latency_ms"] is not None for p in recent)
    quiet = [p for p in body["points"] if p["t"] != older * 1000 and p not in recent]
    assert quiet and all(p["success_rate"] is None and p["latency_ms"] is None for p in quiet)

    # A week in hourly buckets: the older minute from the hourly sums, the last from the live store, none twice.
    week = viewer.get(f"/console/subscriptions/{sub_id}/history?range=7d").get_json()
    assert week["bucket_s"] == 3600 and len(week["points"]) in (168, 169)
    assert sum(p["ok"] for p in week["points"]) == 9 and sum(p["failed"] for p in week["points"]) == 3
    # Three hours ago: only the hourly sum is read (no minute of that hour is asked for).
    hours_ago = (int(time.time()) // 3600 - 3) * 3600
    with app.app_context():
        metric_rollups.add_counts({hours_ago + 600: Counter({(tenant.slug, SUB_OK, sub_id): 5,
                                                             (tenant.slug, SUB_LATENCY_MS, sub_id): 50.0})})
        metric_rollups.add_counts({hours_ago + 1200: Counter({(tenant.slug, SUB_FAILED, sub_id): 5,
                                                              (tenant.slug, SUB_LATENCY_MS, sub_id): 150.0})})
    week = viewer.get(f"/console/subscriptions/{sub_id}/history?range=7d").get_json()
    that_hour = next(p for p in week["points"] if p["t"] == hours_ago * 1000)
    assert that_hour == {"t": hours_ago * 1000, "ok": 5, "failed": 5, "success_rate": 50.0, "latency_ms": 20.0}

    page = viewer.get(f"/console/subscriptions/{sub_id}").get_data(as_text=True)
    assert 'id="chart-sub-outcomes"' in page and 'id="chart-sub-latency"' in page
    their_stream = f"secret-{uuid.uuid4().hex[:6]}"
    api(client, other_tenant, "POST", "/streams", {"name": their_stream, "partitions": 1}, status=201)
    their_sub = api(client, other_tenant, "POST", "/subscriptions",
                    {"stream": their_stream, "url": "http://127.0.0.1:9/x"}, status=201)["id"]
    assert viewer.get(f"/console/subscriptions/{their_sub}/history").status_code == 404
