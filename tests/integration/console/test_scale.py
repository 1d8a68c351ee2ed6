"""Console pages at scale on PostgreSQL: a page's query count does not grow with its size (no N+1).

Seeded with bulk SQL inserts (INSERT ... SELECT generate_series, through SQLAlchemy Core): a stream of
CONSOLE_SCALE_EVENTS events (default 200,000; the issue's target is 1,000,000), 1,000 consumer groups,
100,000 dead letters and 20,000 audit records. Timings are logged (``--log-cli-level=INFO``), never asserted.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import (
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    cast,
    event,
    func,
    insert,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine

from tests.integration.api.test_auth import PASSWORD, make_user
from tests.integration.console.world import api, tenant_id
from tests.support.apps import ADMIN_PASSWORD, TenantCtx, build_app, login, new_tenant
from tests.support.fixtures import close_app
from tests.support.services import postgres_database

logger = logging.getLogger(__name__)

EVENTS = int(os.environ.get("CONSOLE_SCALE_EVENTS", "200000"))
PARTITIONS = 4
GROUPS = 1_000
DEAD_LETTERS = 100_000
AUDIT_RECORDS = 20_000
STREAMS = 30
SUBSCRIPTIONS = 30
JOBS = 60
ROLLUP_MINUTES = 24 * 60  # a day of per-minute roll-ups: every group's lag and a subscription's figures
# The SQL log caches a stream's id for a second: whether a request looks it up again depends on the clock,
# not on the page size, so that one statement is left out of the counts.
_CACHED_LOOKUP = re.compile(r"^SELECT log_streams\.id, log_streams\.partitions\s+FROM log_streams\s+WHERE")


@dataclass
class Scale:
    """The seeded tenant and what the pages are asked about."""

    app: Flask
    tenant: TenantCtx
    stream: str
    sub_id: str
    operator: FlaskClient


@pytest.fixture(scope="module")
def scale() -> Iterator[Scale]:
    """A PostgreSQL app with one big tenant, seeded in bulk."""
    with postgres_database() as url:
        app = build_app(url, WEBHOOK_ALLOW_PRIVATE=True)
        try:
            yield _seed(app)
        finally:
            close_app(app)


def _seed(app: Flask) -> Scale:
    client = app.test_client()
    token = login(client, "admin", ADMIN_PASSWORD)
    tenant = new_tenant(client, token)
    big = "big"
    api(client, tenant, "POST", "/streams", {"name": big, "partitions": PARTITIONS}, status=201)
    for i in range(STREAMS - 1):
        api(client, tenant, "POST", "/streams", {"name": f"s{i:03d}", "partitions": 2}, status=201)
    subs = [api(client, tenant, "POST", "/subscriptions", {"stream": big, "url": f"http://127.0.0.1:9/{i}"},
                status=201)["id"] for i in range(SUBSCRIPTIONS)]
    started = time.monotonic()
    with app.app_context():
        _bulk(app, tenant, f"{tenant.slug}.{big}", subs)
    logger.info("seeded %d events, %d groups, %d dead letters in %.1f s", EVENTS, GROUPS, DEAD_LETTERS,
                time.monotonic() - started)
    operator = app.test_client()
    username = make_user(client, token, "Operator", [tenant.slug])
    assert operator.post("/login/", data={"username": username, "password": PASSWORD}).status_code == 302
    return Scale(app=app, tenant=tenant, stream=big, sub_id=subs[0], operator=operator)


def _bulk(app: Flask, tenant: TenantCtx, log_name: str, subs: list[str]) -> None:
    from app.bus.log.sql_schema import events, group_offsets, log_partitions, log_streams
    from app.extensions import db
    from app.models import AuditRecord, Delivery, ReplayJob
    from app.models.metric import MetricRollup

    session = db.session
    sid = session.execute(select(log_streams.c.id).where(log_streams.c.name == log_name)).scalar_one()
    now_ms = int(time.time() * 1000)
    per_partition = EVENTS // PARTITIONS
    for p in range(PARTITIONS):
        i = func.generate_series(0, per_partition - 1).table_valued("i").render_derived()
        n = i.c.i
        session.execute(insert(events).from_select(
            ["stream_id", "partition", "offset", "ts_ms", "id", "type", "source", "datacontenttype", "key", "data"],
            select(literal(sid), literal(p), n, literal(now_ms - per_partition) + n,
                   func.md5(cast(n, Text) + literal(f"-{p}")),
                   literal("order.created"), literal("/"), literal("application/json"),
                   literal("k") + cast(n % 100, Text),
                   cast(func.convert_to(literal('{"n": ') + cast(n, Text) + literal("}"), "UTF8"), LargeBinary))))
        session.execute(update(log_partitions).where(log_partitions.c.stream_id == sid, log_partitions.c.partition == p)
                        .values(next_offset=per_partition, last_ts_ms=now_ms))
    g = func.generate_series(0, GROUPS * PARTITIONS - 1).table_valued("g").render_derived()
    session.execute(insert(group_offsets).from_select(
        ["group_name", "stream_id", "partition", "offset"],
        select(literal(f"{tenant.slug}.g") + cast(g.c.g // PARTITIONS, Text), literal(sid), g.c.g % PARTITIONS,
               cast(g.c.g, Integer) % per_partition)))
    tid = tenant_id(app, tenant.slug)
    d = func.generate_series(0, DEAD_LETTERS - 1).table_valued("d").render_derived()
    at = func.to_timestamp(literal(now_ms / 1000) - d.c.d)
    session.execute(insert(Delivery).from_select(
        ["id", "tenant_id", "subscription_id", "event_id", "event_type", "event_key", "partition", "offset", "status",
         "origin", "attempts", "body", "created_at", "updated_at"],
        select(cast(func.gen_random_uuid(), String), literal(tid), literal(subs[0]), func.md5(cast(d.c.d, Text)),
               literal("order.created"), null(), d.c.d % PARTITIONS, d.c.d, literal("dead"), literal("live"),
               literal(7), cast(func.convert_to(literal("{}"), "UTF8"), LargeBinary), at, at)))
    a = func.generate_series(0, AUDIT_RECORDS - 1).table_valued("a").render_derived()
    session.execute(insert(AuditRecord).from_select(
        ["at", "tenant_id", "actor", "action", "target_type", "target"],
        select(func.to_timestamp(literal(now_ms / 1000) - a.c.a), literal(tid), literal("seed"),
               literal("stream.update"), literal("stream"), literal("big"))))
    # A day of beat's samples of every group's lag (1,440,000 rows) and of the first subscription's figures
    # (by the minute and by the hour, as metric_rollups.add_counts writes them).
    m = func.generate_series(0, ROLLUP_MINUTES * GROUPS - 1).table_valued("m").render_derived()
    minute_at = func.date_trunc("minute", func.to_timestamp(literal(now_ms / 1000) - (m.c.m / GROUPS) * 60))
    session.execute(insert(MetricRollup).from_select(
        ["tenant_id", "minute", "metric", "subject", "value"],
        select(literal(tid), minute_at, literal("consumer_lag"), literal(f"{log_name.partition('.')[2]}/g")
               + cast(m.c.m % GROUPS, Text), cast(m.c.m % 5000, Float))))
    for metric, value in (("sub_ok", 50.0), ("sub_failed", 2.0), ("sub_latency_ms", 1200.0)):
        k = func.generate_series(0, ROLLUP_MINUTES - 1).table_valued("k").render_derived()
        session.execute(insert(MetricRollup).from_select(
            ["tenant_id", "minute", "metric", "subject", "value"],
            select(literal(tid), func.date_trunc("minute", func.to_timestamp(literal(now_ms / 1000) - k.c.k * 60)),
                   literal(metric), literal(subs[0]), literal(value))))
        h = func.generate_series(0, ROLLUP_MINUTES // 60 - 1).table_valued("h").render_derived()
        session.execute(insert(MetricRollup).from_select(
            ["tenant_id", "minute", "metric", "subject", "value"],
            select(literal(tid), func.date_trunc("hour", func.to_timestamp(literal(now_ms / 1000) - h.c.h * 3600)),
                   literal(f"{metric}:hour"), literal(subs[0]), literal(value * 60))))
    session.execute(insert(ReplayJob), [{"id": str(uuid.uuid4()), "tenant_id": tid, "subscription_id": subs[0],
                                         "kind": "dead_letters", "selector": {"ids": []}, "status": "succeeded"}
                                        for _ in range(JOBS)])
    session.commit()
    session.execute(text("ANALYZE"))  # fresh statistics, as autovacuum would have after a real load
    session.commit()


@contextmanager
def counted() -> Iterator[list[str]]:
    """Every SQL statement run meanwhile (the app's and the event log's engines)."""
    seen: list[str] = []

    thread = threading.get_ident()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Only this thread's statements: the live-metrics flush thread writes now and then.
        if threading.get_ident() == thread and not _CACHED_LOOKUP.match(statement):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def _measure(browser: FlaskClient, path: str, args: dict[str, str]) -> tuple[int, float]:
    with counted() as statements:
        started = time.perf_counter()
        resp = browser.get(path, query_string=args)
        elapsed = time.perf_counter() - started
    assert resp.status_code == 200, (path, args, resp.get_data(as_text=True)[:500])
    return len(statements), elapsed


def _pages(s: Scale) -> list[tuple[str, dict[str, str], str, int, int]]:
    """(path, fixed args, the paging arg, a small and a large page size)."""
    return [
        ("/console/streams/", {}, "limit", 5, 25),
        ("/console/events/", {"stream": s.stream}, "limit", 10, 500),
        ("/console/events/", {"stream": s.stream, "order": "oldest"}, "limit", 10, 500),
        ("/console/events/", {"stream": s.stream, "partition": "1", "offset": "1000"}, "limit", 10, 500),
        ("/console/events/", {"stream": s.stream, "type": "order.*", "key": "k7"}, "limit", 10, 100),
        ("/console/groups/", {}, "limit", 10, 200),
        ("/console/groups/", {"stream": s.stream}, "limit", 10, 200),
        ("/console/subscriptions/", {}, "limit", 5, 25),
        (f"/console/subscriptions/{s.sub_id}", {}, "limit", 5, 200),
        ("/console/dead-letters/", {}, "limit", 10, 200),
        ("/console/dead-letters/", {"subscription": s.sub_id}, "limit", 10, 200),
        ("/console/replay-jobs/", {}, "limit", 5, 50),
        ("/console/audit/", {}, "limit", 10, 200),
        ("/console/audit/", {"action": "stream.*", "actor": "seed"}, "limit", 10, 200),
        ("/console/api-keys/", {}, "limit", 1, 4),
    ]


def test_page_query_counts_do_not_grow_with_page_size(scale: Scale) -> None:
    for path, fixed, param, small, large in _pages(scale):
        _measure(scale.operator, path, {**fixed, param: str(small)})  # warm caches (permissions, schema ids)
        few, t_few = _measure(scale.operator, path, {**fixed, param: str(small)})
        many, t_many = _measure(scale.operator, path, {**fixed, param: str(large)})
        logger.info("%s %s: %d queries (%s=%d, %.0f ms), %d queries (%s=%d, %.0f ms)", path, fixed, few, param,
                    small, t_few * 1000, many, param, large, t_many * 1000)
        assert few == many, (path, fixed, few, many)
        assert many <= 30, (path, fixed, many)


def test_fixed_pages_stay_within_a_few_queries(scale: Scale) -> None:
    s = scale
    for path in (f"/console/streams/{s.stream}", f"/console/groups/{s.stream}/g500"):
        _measure(s.operator, path, {})
        count, elapsed = _measure(s.operator, path, {})
        logger.info("%s: %d queries, %.0f ms", path, count, elapsed * 1000)
        assert count <= 30, (path, count)


def test_history_charts_cost_the_same_whatever_the_range(scale: Scale) -> None:
    s = scale
    for path in (f"/console/groups/{s.stream}/g500/history", f"/console/subscriptions/{s.sub_id}/history"):
        _measure(s.operator, path, {})
        counts = {}
        for range_name in ("1h", "24h", "7d"):
            counts[range_name], elapsed = _measure(s.operator, path, {"range": range_name})
            logger.info("%s?range=%s: %d queries, %.0f ms", path, range_name, counts[range_name], elapsed * 1000)
        # A day asks for 24 times the minutes of an hour in the same queries; a week adds at most the read of the
        # subscription's hourly sums.
        assert counts["1h"] == counts["24h"] and counts["7d"] <= counts["1h"] + 1 <= 30, (path, counts)
    day = s.operator.get(f"/console/groups/{s.stream}/g500/history", query_string={"range": "24h"}).get_json()
    assert sum(1 for _, v in day["points"] if v is not None) >= 95  # the seeded day, in 15-minute buckets
    sub = s.operator.get(f"/console/subscriptions/{s.sub_id}/history").get_json()
    full = [p for p in sub["points"] if p["ok"] == 50]
    assert full and all(p["success_rate"] == round(100 * 50 / 52, 2) and p["latency_ms"] == round(1200 / 52, 2)
                        for p in full)


def test_sampling_the_lag_of_1000_groups_costs_a_few_queries(scale: Scale) -> None:
    from app.services import metric_rollups

    with scale.app.app_context():
        with counted() as statements:
            started = time.perf_counter()
            rows = metric_rollups.sample_gauges(time.time() + 3600)  # a minute not seeded: inserts, not updates
            elapsed = time.perf_counter() - started
    logger.info("sample_gauges: %d rows, %d statements, %.0f ms", rows, len(statements), elapsed * 1000)
    assert rows >= GROUPS  # every group of the big tenant
    assert len(statements) <= 10, statements


def test_counts_are_shown_capped_and_pages_continue(scale: Scale) -> None:
    page = scale.operator.get("/console/dead-letters/", query_string={"limit": "50"}).get_data(as_text=True)
    assert 'id="dead-count">10000+<' in page
    subs = scale.operator.get("/console/subscriptions/").get_data(as_text=True)
    assert ">10000+</a>" in subs  # the first subscription's 100,000 dead letters, counted up to the cap
    detail = scale.operator.get(f"/console/subscriptions/{scale.sub_id}").get_data(as_text=True)
    assert 'id="sub-dead">10000+<' in detail
    groups = scale.operator.get("/console/groups/", query_string={"limit": "200"}).get_data(as_text=True)
    assert groups.count("<tr data-group=") == 200 and 'id="next-page"' in groups
    streams = scale.operator.get("/console/streams/").get_data(as_text=True)
    expected = EVENTS // PARTITIONS * PARTITIONS
    assert re.search(rf'<tr data-stream="big">.*?class="stream-events">{expected}<', streams, re.S)
