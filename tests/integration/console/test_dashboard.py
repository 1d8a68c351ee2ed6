"""The dashboard's figures: roll-ups in the database, the last-hour snapshot, the page per role, the tenant switcher."""
from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert

from app.services import metric_rollups
from app.services.live_metrics import (
    DEAD_LETTERED,
    DELIVERIES_FAILED,
    DELIVERIES_OK,
    EVENTS_IN,
    SUB_FAILED,
    SUB_LATENCY_MS,
    SUB_OK,
    LiveMetrics,
    live,
)
from tests.integration.api.test_auth import PASSWORD, make_user
from tests.integration.console.conftest import ConsoleLogin
from tests.integration.console.world import add_dead_letters, api, tenant_id
from tests.support.apps import TenantCtx


def _minute(offset_min: int) -> int:
    now = int(time.time())
    return now - now % 60 + offset_min * 60


def _history(app: Flask, slug: str) -> list[tuple[datetime, str, str, float]]:
    with app.app_context():
        now = datetime.now(UTC)
        return metric_rollups.history(tenant_id(app, slug), now - timedelta(days=30), now + timedelta(minutes=2))


def _publish(client: FlaskClient, tenant: TenantCtx, stream: str, n: int) -> None:
    body = {"events": [{"type": "t", "data": {}}] * n}
    api(client, tenant, "POST", f"/streams/{stream}/events", body, "publish", 201)


def _stream(client: FlaskClient, tenant: TenantCtx, partitions: int = 1) -> str:
    name = f"s-{uuid.uuid4().hex[:6]}"
    api(client, tenant, "POST", "/streams", {"name": name, "partitions": partitions}, status=201)
    return name


def test_counters_add_up_across_flushes_and_processes(app: Flask, tenant: TenantCtx,
                                                     other_tenant: TenantCtx) -> None:
    m = _minute(-30)
    with app.app_context():
        # Two processes flushing the same minute: their counts add up, per tenant.
        metric_rollups.add_counts({m: Counter({(tenant.slug, EVENTS_IN, "a"): 5})})
        metric_rollups.add_counts({
            m: Counter({(tenant.slug, EVENTS_IN, "a"): 7, (other_tenant.slug, EVENTS_IN, "a"): 1}),
            m + 60: Counter({(tenant.slug, DELIVERIES_OK, "a"): 3})})
        metric_rollups.add_counts({m: Counter({("no-such-tenant", EVENTS_IN, "a"): 9})})  # dropped, no error

    rows = {(at, metric, subject): value for at, metric, subject, value in _history(app, tenant.slug)}
    start = datetime.fromtimestamp(m, UTC)
    assert rows == {(start, EVENTS_IN, "a"): 12.0, (start + timedelta(minutes=1), DELIVERIES_OK, "a"): 3.0}
    assert [r[3] for r in _history(app, other_tenant.slug)] == [1.0]


def test_live_metrics_flush_completed_minutes_then_everything(app: Flask, tenant: TenantCtx) -> None:
    lm = LiveMetrics(app)
    lm.counters.add(tenant.slug, EVENTS_IN, "x", 4, now=_minute(-5) + 10)
    lm.counters.add(tenant.slug, EVENTS_IN, "x", 2, now=time.time())
    assert lm.flush() == 1  # only the finished minute: the current one is still being counted
    assert [r[3] for r in _history(app, tenant.slug)] == [4.0]
    assert lm.flush(everything=True) == 1  # shutdown: the current minute too
    assert sorted(r[3] for r in _history(app, tenant.slug)) == [2.0, 4.0]


def test_a_process_ending_normally_writes_its_last_minute(app: Flask, tenant: TenantCtx) -> None:
    # A real interpreter counts (starting the flusher thread) and exits at once, long before a flush is due:
    # what it counted in the current minute is in the roll-ups all the same (stop() runs at exit).
    import subprocess
    import sys

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    script = ("import sys; from app import create_app; from app.services.live_metrics import count; "
              "app = create_app('testing', {'SQLALCHEMY_DATABASE_URI': sys.argv[1], 'METRICS_FLUSH_S': 3600}); "
              "ctx = app.app_context(); ctx.push(); count(sys.argv[2], 'events_in', 'at-exit', 7)")
    proc = subprocess.run([sys.executable, "-c", script, url, tenant.slug], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r[3] for r in _history(app, tenant.slug) if r[2] == "at-exit"] == [7.0]


def test_a_forked_process_counts_on_its_own(app: Flask, tenant: TenantCtx) -> None:
    lm = LiveMetrics(app)
    lm.count(tenant.slug, EVENTS_IN, "x", 2)
    parent_counters, parent_stop = lm.counters, lm._stop
    lm._pid = -1  # as seen from a prefork child: the parent's thread and counts are not its own
    lm.count(tenant.slug, EVENTS_IN, "x", 3)
    assert lm.counters is not parent_counters and lm._thread is not None and lm._thread.is_alive()
    now = int(time.time()) + 1
    assert sum(v for b in lm.store.seconds(tenant.slug, now - 5, now).values() for v in b.values()) == 3
    parent_stop.set()  # in a real fork that thread lives in the parent only
    lm.stop()


def test_rollup_task_samples_gauges_and_prunes(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    from app.extensions import celery, db
    from app.models.metric import MetricRollup
    from workers import init_celery

    stream = _stream(client, tenant)
    _publish(client, tenant, stream, 5)
    api(client, tenant, "POST", f"/streams/{stream}/groups/billing/commit",
        {"offsets": [{"partition": 0, "offset": 2}]}, "consume", 204)
    sub = api(client, tenant, "POST", "/subscriptions", {"stream": stream, "url": "http://127.0.0.1:9/h"}, status=201)
    add_dead_letters(app, tenant.slug, sub["id"], 2)
    tid = tenant_id(app, tenant.slug)
    old = datetime.now(UTC) - timedelta(days=8)
    with app.app_context():
        db.session.execute(insert(MetricRollup), [
            {"tenant_id": tid, "minute": old.replace(second=0, microsecond=0), "metric": EVENTS_IN, "subject": stream,
             "value": 1.0},
            {"tenant_id": tid, "minute": (old + timedelta(days=2)).replace(second=0, microsecond=0),
             "metric": EVENTS_IN, "subject": stream, "value": 1.0}])
        db.session.commit()

    init_celery(app)
    celery.loader.import_default_modules()
    result = celery.tasks["metrics.rollup"].apply().get()  # as beat would run it, outside any app context

    assert result["pruned"] >= 1 and result["sampled"] >= 2
    rows = _history(app, tenant.slug)
    gauges = {(metric, subject): value for _, metric, subject, value in rows
              if metric in ("consumer_lag", "dead_letters")}
    assert gauges[("consumer_lag", f"{stream}/billing")] == 3.0
    assert gauges[("dead_letters", "")] == 2.0
    assert len([r for r in rows if r[1] == EVENTS_IN]) == 1  # 8 days old: gone; 6 days old: kept (7 days)
    # Sampled again in the same minute: replaced, not added.
    with app.app_context():
        metric_rollups.sample_gauges(time.time())
    again = {(metric, subject): value for _, metric, subject, value in _history(app, tenant.slug)}
    assert again[("dead_letters", "")] == 2.0


def test_snapshot_joins_rollups_and_live_seconds_of_the_tenant_only(
        app: Flask, client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx,
        console_login: ConsoleLogin) -> None:
    stream, theirs = _stream(client, tenant), _stream(client, other_tenant)
    minute = _minute(-10)  # once: the test may cross a minute boundary (it sleeps)
    with app.app_context():
        metric_rollups.add_counts({minute: Counter({(tenant.slug, EVENTS_IN, stream): 120})})
        metric_rollups.add_counts({minute: Counter({(other_tenant.slug, EVENTS_IN, theirs): 60})})
    _publish(client, tenant, stream, 3)
    api(client, other_tenant, "POST", f"/streams/{theirs}/events", {"type": "t", "data": {}}, "publish", 201)
    api(client, tenant, "POST", f"/streams/{stream}/groups/g1/commit", {"offsets": [{"partition": 0, "offset": 1}]},
        "consume", 204)
    time.sleep(1.05)  # the snapshot's live part ends with the last complete second

    browser = console_login("Viewer", tenant)
    resp = browser.get("/console/dashboard/snapshot")

    assert resp.status_code == 200
    snap = resp.get_json()
    assert snap["tenant"] == tenant.slug
    assert snap["until"] - snap["since"] <= 3600_000 + 60_000
    points = snap["rates"]["events_in"][stream]
    minute_point = [minute * 1000 + 30_000, 2.0]  # 120 events in the minute: 2 a second on average
    assert minute_point in points
    live_points = [p for p in points if p[0] >= snap["live_from"]]
    assert sum(p[1] for p in live_points) == 3
    assert theirs not in snap["rates"]["events_in"]
    assert snap["gauges"]["consumer_lag"][f"{stream}/g1"][-1][1] == 2.0
    assert snap["gauges"]["dead_letters"][""][-1][1] == 0.0


def test_deliveries_are_counted_for_prometheus_and_the_dashboard(app: Flask, client: FlaskClient,
                                                                tenant: TenantCtx) -> None:
    from app.services.dispatch_record import after_attempts

    stream = _stream(client, tenant)
    ok = SimpleNamespace(result=SimpleNamespace(duration_ms=10.0), kind="success", status="succeeded")
    retry = SimpleNamespace(result=SimpleNamespace(duration_ms=30.0), kind="retry", status="retrying")
    dead = SimpleNamespace(result=SimpleNamespace(duration_ms=50.0), kind="retry", status="dead")
    held = SimpleNamespace(result=None, kind=None, status=None)
    spec = SimpleNamespace(id=str(uuid.uuid4()), tenant_id=tenant_id(app, tenant.slug),
                           stream=f"{tenant.slug}.{stream}")
    with app.app_context():
        after_attempts(spec, [ok, ok, retry, dead, held])  # the dispatcher's record step
        now = int(time.time()) + 1
        seconds = live(app).store.seconds(tenant.slug, now - 5, now)  # type: ignore[union-attr]
    counted = Counter()
    for bucket in seconds.values():
        counted.update(bucket)
    assert counted[(DELIVERIES_OK, stream)] == 2
    assert counted[(DELIVERIES_FAILED, stream)] == 2
    assert counted[(DEAD_LETTERED, stream)] == 1
    # ...and per subscription, for its page's charts: attempts by outcome and their summed duration.
    assert counted[(SUB_OK, spec.id)] == 2
    assert counted[(SUB_FAILED, spec.id)] == 2
    assert counted[(SUB_LATENCY_MS, spec.id)] == 100.0  # 10 + 10 + 30 + 50; the held item was no attempt

    text = client.get("/metrics").get_data(as_text=True)
    labels = f'stream="{stream}",tenant="{tenant.slug}"'
    assert f'bus_deliveries_total{{outcome="succeeded",{labels}}} 2.0' in text
    assert f'bus_deliveries_total{{outcome="failed",{labels}}} 2.0' in text
    assert f"bus_dead_lettered_total{{{labels}}} 1.0" in text
    assert f'bus_dead_letters{{tenant="{tenant.slug}"}} 0.0' in text


def test_prometheus_exposes_lag_per_group(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = _stream(client, tenant)
    _publish(client, tenant, stream, 4)
    api(client, tenant, "POST", f"/streams/{stream}/groups/audit/commit", {"offsets": [{"partition": 0, "offset": 1}]},
        "consume", 204)
    text = client.get("/metrics").get_data(as_text=True)
    assert f'bus_consumer_lag{{group="audit",stream="{stream}",tenant="{tenant.slug}"}} 3.0' in text
    assert f'bus_events_published_total{{stream="{stream}",tenant="{tenant.slug}"}} 4.0' in text


def test_every_role_sees_the_dashboard_and_anonymous_is_sent_to_login(app: Flask, tenant: TenantCtx,
                                                                      console_login: ConsoleLogin) -> None:
    for role in ("Admin", "Operator", "Viewer"):
        browser = console_login(role, tenant)
        page = browser.get("/console/dashboard/")
        assert page.status_code == 200, role
        html = page.get_data(as_text=True)
        assert f"tenant {tenant.slug}" in html
        assert "vendor/chart.js/chart.umd.min.js" in html and "vendor/socket.io/socket.io.min.js" in html
        assert 'id="tenant-switcher"' in html
    anonymous = app.test_client()
    for path in ("/console/dashboard/", "/console/dashboard/snapshot"):
        resp = anonymous.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], path
    assert anonymous.post("/console/tenant/", data={"tenant": tenant.slug}).status_code == 302


def test_tenant_switcher_moves_between_the_users_tenants_only(app: Flask, client: FlaskClient, admin_token: str,
                                                              tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    from tests.support.apps import new_tenant

    third = new_tenant(client, admin_token)
    username = make_user(client, admin_token, "Viewer", [tenant.slug, other_tenant.slug])
    browser = app.test_client()
    assert browser.post("/login/", data={"username": username, "password": PASSWORD}).status_code == 302

    # Several tenants and no choice yet: the first one; the navbar offers both, not the third.
    assert browser.get("/console/dashboard/snapshot").get_json()["tenant"] == tenant.slug
    html = browser.get("/console/dashboard/").get_data(as_text=True)
    assert f'data-tenant="{other_tenant.slug}"' in html and third.slug not in html

    # A Viewer may switch (it changes nothing but the session), back to the page it came from.
    resp = browser.post("/console/tenant/", data={"tenant": other_tenant.slug, "next": "/console/dashboard/"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/console/dashboard/")
    assert browser.get("/console/dashboard/snapshot").get_json()["tenant"] == other_tenant.slug

    # A tenant not theirs is refused on the server, and an outside "next" is not followed.
    resp = browser.post("/console/tenant/", data={"tenant": third.slug, "next": "https://evil.example/"})
    assert resp.status_code == 302 and "evil.example" not in resp.headers["Location"]
    assert browser.get("/console/dashboard/snapshot").get_json()["tenant"] == other_tenant.slug

    # An Admin may work in any tenant.
    admin = app.test_client()
    assert admin.post("/login/", data={"username": "admin", "password": "admin-test-password"}).status_code == 302
    admin.post("/console/tenant/", data={"tenant": third.slug})
    assert admin.get("/console/dashboard/snapshot").get_json()["tenant"] == third.slug
