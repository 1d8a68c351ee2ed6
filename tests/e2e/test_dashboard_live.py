"""The dashboard moves: events published through the API show in its Chart.js data within 3 seconds."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Bus, LoginAs
from tests.support.receiver import receiver

LIVE_WITHIN_MS = 3000

# Reads the chart's own data: is there a point of ``stream`` above zero at or after ``since`` (server ms)?
_STREAM_MOVED = """([stream, since]) => {
  const chart = window.busDashboard && window.busDashboard.charts.events.chart;
  const ds = chart && chart.data.datasets.find((d) => d.label === stream);
  return !!ds && ds.data.some((p) => p.y > 0 && p.x >= since);
}"""
_DATASETS = """(name) => window.busDashboard.charts[name].chart.data.datasets.map(
  (d) => ({label: d.label, total: d.data.reduce((s, p) => s + p.y, 0), points: d.data.length}))"""


def _publish(bus: Bus, stream: str, n: int) -> None:
    resp = httpx.post(f"{bus.url}/api/v1/streams/{stream}/events", timeout=30,
                      headers={"Authorization": f"Bearer {bus.admin_token}"},
                      json={"events": [{"type": "order.created", "key": f"k{i % 5}", "data": {"i": i}}
                                       for i in range(n)]})
    assert resp.status_code == 201, resp.text


def test_chart_moves_within_3_seconds_of_publishing(bus: Bus, login_as: LoginAs,
                                                    screenshot: Callable[[Any, str], Path]) -> None:
    stream = f"orders-{uuid.uuid4().hex[:6]}"
    bus.api("POST", "/streams", {"name": stream, "partitions": 3}, status=201)
    page = login_as("Viewer")  # read-only users watch the same live figures
    page.goto("/console/dashboard/")
    page.wait_for_selector("#dash-status:text('live')")
    assert not page.evaluate(_STREAM_MOVED, [stream, 0])

    since = int(time.time()) * 1000 - 1000  # the second being counted when the first event lands
    _publish(bus, stream, 25)
    # The "within 3 s": the wait fails the test if the chart has not moved by then.
    page.wait_for_function(_STREAM_MOVED, arg=[stream, since], timeout=LIVE_WITHIN_MS, polling=100)

    datasets = {d["label"]: d for d in page.evaluate(_DATASETS, "events")}
    assert datasets[stream]["total"] == 25  # the chart holds exactly what was published, second by second
    assert page.locator("#tile-events").inner_text() != "–"


def test_dashboard_shows_deliveries_lag_and_dead_letters(bus: Bus, login_as: LoginAs,
                                                         screenshot: Callable[[Any, str], Path]) -> None:
    stream = f"payments-{uuid.uuid4().hex[:6]}"
    bus.api("POST", "/streams", {"name": stream, "partitions": 2}, status=201)
    with receiver() as hooks:
        bus.api("POST", "/subscriptions", {"stream": stream, "url": hooks.url("/hook")}, status=201)
        # Nothing listens on port 9: every attempt fails and is retried.
        bus.api("POST", "/subscriptions", {"stream": stream, "url": "http://127.0.0.1:9/down"}, status=201)
        page = login_as("Operator")
        page.goto("/console/dashboard/")
        page.wait_for_selector("#dash-status:text('live')")

        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set():
                _publish(bus, stream, 7)
                stop.wait(0.4)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            bus.api("POST", f"/streams/{stream}/groups/reports/commit",
                    {"offsets": [{"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}]}, status=204)
            page.wait_for_function("""() => {
              const ds = window.busDashboard.charts.deliveries.chart.data.datasets;
              const total = (label) => (ds.find((d) => d.label === label) || {data: []}).data
                .reduce((s, p) => s + p.y, 0);
              return total('succeeded') > 0 && total('failed') > 0;
            }""", timeout=20_000, polling=250)
            page.wait_for_function("""(stream) => window.busDashboard.charts.lag.chart.data.datasets
              .some((d) => d.label === stream + ' / reports' && d.data.some((p) => p.y > 0))""",
                                   arg=stream, timeout=10_000, polling=250)
            time.sleep(4)  # a few more seconds of traffic for the screenshot
        finally:
            stop.set()
            producer.join(5)
        assert hooks.requests("/hook"), "the receiving webhook got nothing"
        page.wait_for_timeout(1200)
        shot = screenshot(page, "dashboard")
        assert shot.stat().st_size > 10_000

    streams = login_as("Admin")
    streams.goto("/console/streams/")
    assert streams.locator(f"text={stream}").count() > 0
    screenshot(streams, "streams")
