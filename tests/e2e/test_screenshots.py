"""A screenshot of every main console page, with something on it, in tests/e2e/screenshots/ (git-ignored).

The pictures are for a human to look at (layout, charts, overflow); the test checks what a script can: every
page answers, draws its table or chart with the data made here, and shows no error.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Bus, LoginAs
from tests.support.receiver import fail, ok, receiver

_SCHEMA = '{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}, ' \
          '{"name": "amount", "type": "double"}]}'


def _publish(bus: Bus, stream: str, n: int, start: int = 0) -> None:
    bus.api("POST", f"/streams/{stream}/events", {"events": [
        {"type": "order.created" if i % 3 else "order.paid", "key": f"customer-{i % 7}",
         "data": {"id": f"o-{start + i}", "amount": round(10 + (start + i) * 1.5, 2), "currency": "EUR"}}
        for i in range(n)]}, status=201)


def _world(bus: Bus, hooks: Any, console: Any) -> dict[str, str]:
    """A stream with traffic, a lagging group, a flaky and a broken subscription, dead letters, a replay job,
    a schema and an API key: something on every page."""
    stream = f"shop-orders-{uuid.uuid4().hex[:4]}"
    bus.api("POST", "/streams", {"name": stream, "partitions": 3, "description": "orders of the web shop"},
            status=201)
    # Two successes, then a failure, over and over: a success rate near two thirds.
    hooks.script("/orders", *([ok(), ok(), fail(503)] * 40), ok())
    flaky = bus.api("POST", "/subscriptions", {"stream": stream, "url": hooks.url("/orders"),
                                               "retry_schedule": [1, 1], "description": "order service"},
                    status=201)["id"]
    broken = bus.api("POST", "/subscriptions", {"stream": stream, "url": hooks.url("/broken"),
                                                "retry_schedule": [1]}, status=201)["id"]
    hooks.script("/broken", fail(500))
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            _publish(bus, stream, 4, n)
            n += 4
            stop.wait(0.5)

    bus.api("POST", f"/streams/{stream}/groups/analytics/commit",
            {"offsets": [{"partition": p, "offset": 0} for p in range(3)]}, status=204)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        hooks.wait_for(40, "/broken", timeout=60)
        # Beat samples every group's lag once a minute: wait for a sample, so that the chart has a history.
        history = f"/console/groups/{stream}/analytics/history"
        for _ in range(150):
            if any(v is not None for _, v in console.request.get(history).json()["points"]):
                break
            stop.wait(0.5)
    finally:
        stop.set()
        producer.join(5)
    dead = []
    for _ in range(40):
        dead = bus.api("GET", f"/dead-letters?subscription={broken}", status=200)["items"]
        if len(dead) >= 5:
            break
        stop.wait(0.5)
    assert dead, "no dead letters to show"
    bus.api("POST", "/dead-letters/replay", {"ids": [dead[0]["id"]]}, status=202)
    key = bus.api("POST", "/api-keys", {"name": "shop-producer", "scopes": ["publish"]}, status=201)["key"]
    resp = httpx.post(f"{bus.url}/registry/subjects/{stream}-value/versions", auth=("shop", key), timeout=30,
                      json={"schema": _SCHEMA})
    assert resp.status_code == 200, resp.text
    return {"stream": stream, "group": "analytics", "flaky": flaky, "broken": broken, "dead": dead[0]["id"]}


def test_every_main_page_is_drawn_with_data(bus: Bus, login_as: LoginAs,
                                            screenshot: Callable[[Any, str], Path]) -> None:
    page = login_as("Admin")
    with receiver() as hooks:
        w = _world(bus, hooks, page)
    pages = [
        ("dashboard", "/console/dashboard/", "#chart-events"),
        ("streams", "/console/streams/", f"tr[data-stream='{w['stream']}']"),
        ("stream-detail", f"/console/streams/{w['stream']}", "table"),
        ("event-browser", f"/console/events/?stream={w['stream']}", "#events-table tr.event-row"),
        ("groups", "/console/groups/", f"tr[data-group='{w['group']}']"),
        ("group-detail", f"/console/groups/{w['stream']}/{w['group']}", "#chart-lag-history"),
        ("subscriptions", "/console/subscriptions/", "table"),
        ("subscription-detail", f"/console/subscriptions/{w['flaky']}", "#chart-sub-outcomes"),
        ("dead-letters", "/console/dead-letters/", f"tr[data-dead-letter='{w['dead']}']"),
        ("dead-letter-detail", f"/console/dead-letters/{w['dead']}", "pre"),
        ("replay-jobs", "/console/replay-jobs/", "table"),
        ("schemas", "/console/schemas/", f"text={w['stream']}-value"),
        ("schema-subject", f"/console/schemas/subject/{w['stream']}-value", "text=Order"),
        ("audit", "/console/audit/", "table"),
        ("api-keys", "/console/api-keys/", "text=shop-producer"),
    ]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    for name, path, shows in pages:
        resp = page.goto(path)
        assert resp is not None and resp.status == 200, (path, resp and resp.status)
        page.wait_for_selector(shows)
        if name == "dashboard":
            page.wait_for_selector("#dash-status:text('live')")
            page.wait_for_timeout(1500)
        assert page.locator(".alert-danger").count() == 0, (path, page.locator(".alert-danger").first.inner_text())
        shot = screenshot(page, name)
        assert shot.stat().st_size > 5_000
    assert errors == []

    # The charts hold the traffic made above: lag now, attempts that succeeded and failed.
    page.goto(f"/console/groups/{w['stream']}/{w['group']}")
    assert page.evaluate("() => window.busHistory.data().now[1]") > 0
    page.goto(f"/console/subscriptions/{w['flaky']}")
    totals = page.evaluate("""() => window.busHistory.data().points.reduce(
        (t, p) => ({ok: t.ok + p.ok, failed: t.failed + p.failed}), {ok: 0, failed: 0})""")
    assert totals["ok"] > 0 and totals["failed"] > 0
