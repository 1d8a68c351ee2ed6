"""The console's operator flows in a real browser: create a stream, produce and find an event, reset a group and
watch its lag change, replay a dead letter to a receiver that now answers; and a Viewer refused on the server."""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

from tests.e2e.conftest import Bus, LoginAs
from tests.support.receiver import Receiver, fail, ok, receiver

# Is the lag chart's newest point (the lag read now) ``lag``? Read from the page's Chart.js data.
_LAG_NOW_IS = """(lag) => { const d = window.busHistory.charts.lag.data.datasets[0].data;
  return d.length > 0 && d[d.length - 1].y === lag; }"""


def _csrf(page: Any) -> str:
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token, "the page carries no CSRF token"
    return token


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _publish(bus: Bus, stream: str, n: int) -> None:
    bus.api("POST", f"/streams/{stream}/events", {"events": [
        {"type": "order.created", "key": f"k{i}", "data": {"i": i}} for i in range(n)]}, status=201)


def test_an_operator_creates_a_stream_produces_an_event_and_finds_it(bus: Bus, login_as: LoginAs) -> None:
    page = login_as("Operator")
    page.goto("/console/streams/")
    stream = _name("made-here")
    details = page.locator("#create-stream")
    if details.get_attribute("open") is None:
        page.click("#create-stream > summary")
    page.fill("#create-stream input[name=name]", stream)
    page.fill("#create-stream input[name=partitions]", "2")
    page.fill("#create-stream input[name=description]", "made in the browser")
    page.click("#create-stream button[type=submit]")
    page.wait_for_selector(f"tr[data-stream='{stream}']")
    assert len(bus.api("GET", f"/streams/{stream}", status=200)["partitions"]) == 2

    page.goto(f"/console/events/?stream={stream}")
    page.click("#produce > summary")
    page.fill("#produce input[name=type]", "order.placed")
    page.fill("#produce input[name=key]", "customer-42")
    page.fill("#produce textarea[name=data]", '{"amount": 1234, "needle": "found-me"}')
    page.click("#produce button[type=submit]")
    page.wait_for_selector(".alert-success")

    # The event browser finds it by its data, with the key and type it was given.
    page.goto(f"/console/events/?stream={stream}&q=found-me")
    rows = page.locator("#events-table tr.event-row")
    assert rows.count() == 1
    assert "order.placed" in rows.first.inner_text() and "customer-42" in rows.first.inner_text()
    rows.first.locator("summary").click()
    assert '"amount": 1234' in rows.first.locator("pre.event-json").inner_text()


def test_an_operator_resets_a_group_and_sees_its_lag_change(bus: Bus, login_as: LoginAs) -> None:
    stream, group = _name("resets"), "billing"
    bus.api("POST", "/streams", {"name": stream, "partitions": 2}, status=201)
    _publish(bus, stream, 10)
    bus.api("POST", f"/streams/{stream}/groups/{group}/commit",
            {"offsets": [{"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}]}, status=204)
    page = login_as("Operator")
    page.goto(f"/console/groups/{stream}/{group}")
    assert page.locator("#total-lag").inner_text() == "10"
    page.wait_for_function(_LAG_NOW_IS, arg=10)

    page.check("#reset-form input[name=mode][value=latest]")
    page.click("#reset-form button[type=submit]")
    assert page.locator("#changes-count").inner_text() == "2"  # the confirmation: both partitions move
    assert bus.api("GET", f"/streams/{stream}/groups/{group}", status=200)["lag"] == 10  # nothing changed yet
    page.click("#confirm-reset button[type=submit]")
    page.wait_for_url(f"**/console/groups/{stream}/{group}")
    assert "lag is now 0" in page.locator(".alert-success").inner_text()
    assert page.locator("#total-lag").inner_text() == "0"
    page.wait_for_function(_LAG_NOW_IS, arg=0)
    assert bus.api("GET", f"/streams/{stream}/groups/{group}", status=200)["lag"] == 0

    # New events show on the page without a reload: the chart's poll also rewrites the table.
    _publish(bus, stream, 3)
    page.evaluate("window.busHistory.load()")
    page.wait_for_function("() => document.getElementById('total-lag').textContent === '3'")


def _dead_letter(bus: Bus, hooks: Receiver, stream: str) -> tuple[str, str]:
    """A subscription whose endpoint fails twice (a dead letter after its one retry), then answers 200."""
    hooks.script("/flaky", fail(500), fail(500), ok())
    sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": hooks.url("/flaky"), "retry_schedule": [1]},
                  status=201)
    _publish(bus, stream, 1)
    hooks.wait_for(2, "/flaky", timeout=60)
    for _ in range(60):
        dead = bus.api("GET", f"/dead-letters?subscription={sub['id']}", status=200)["items"]
        if dead:
            return sub["id"], dead[0]["id"]
        time.sleep(0.5)
    raise AssertionError("no dead letter after two failed attempts")


def test_an_operator_replays_a_dead_letter_and_it_is_delivered(bus: Bus, login_as: LoginAs) -> None:
    stream = _name("replays")
    bus.api("POST", "/streams", {"name": stream, "partitions": 1}, status=201)
    with receiver() as hooks:
        sub_id, dead_id = _dead_letter(bus, hooks, stream)
        page = login_as("Operator")
        page.goto(f"/console/dead-letters/?subscription={sub_id}")
        row = page.locator(f"tr[data-dead-letter='{dead_id}']")
        assert row.count() == 1
        row.locator("input[name=ids]").check()
        page.once("dialog", lambda dialog: dialog.accept())  # "Replay the selected dead letters?"
        page.click("#replay-selected button[type=submit]")
        page.wait_for_url("**/console/replay-jobs/**")
        flash = page.locator(".alert-success").inner_text()
        job_id = re.search(r"Replay job ([0-9a-f-]{36}) queued", flash)
        assert job_id, flash
        # The job's row polls its progress while it is queued or running (it may be done before the page is).
        page.wait_for_selector(f"tr[data-job='{job_id.group(1)}'] .job-status .label:text('succeeded')",
                               timeout=60_000)
        requests = hooks.wait_for(3, "/flaky", timeout=30)
        assert len({r.webhook_id for r in requests}) == 1  # the same event, the third time answered 200

    page.goto(f"/console/subscriptions/{sub_id}")
    delivery = page.locator("#deliveries-table tr.delivery-row").first
    assert "succeeded" in delivery.locator("td").nth(5).inner_text()
    assert delivery.get_attribute("data-origin") == "replay"
    assert delivery.locator("tr.attempt").count() == 3
    assert bus.api("GET", f"/dead-letters?subscription={sub_id}", status=200)["items"] == []
    # The subscription's charts count the three attempts: one succeeded, two failed.
    totals = page.evaluate("""() => window.busHistory.data().points.reduce(
        (t, p) => ({ok: t.ok + p.ok, failed: t.failed + p.failed}), {ok: 0, failed: 0})""")
    assert totals == {"ok": 1, "failed": 2}


def test_a_viewer_sees_no_actions_and_forged_posts_change_nothing(bus: Bus, login_as: LoginAs) -> None:
    stream, group = _name("viewed"), "readers"
    bus.api("POST", "/streams", {"name": stream, "partitions": 1}, status=201)
    _publish(bus, stream, 4)
    bus.api("POST", f"/streams/{stream}/groups/{group}/commit", {"offsets": [{"partition": 0, "offset": 1}]},
            status=204)
    with receiver() as hooks:
        hooks.script("/down", fail(500))
        sub = bus.api("POST", "/subscriptions", {"stream": stream, "url": hooks.url("/down"), "retry_schedule": [1]},
                      status=201)
        viewer = login_as("Viewer")
        # Hidden: no create, produce, reset, replay or subscription actions on the pages.
        for path, absent in (("/console/streams/", "#create-stream"), (f"/console/events/?stream={stream}", "#produce"),
                             (f"/console/groups/{stream}/{group}", "#reset-form"),
                             ("/console/dead-letters/", "#replay-selected button[type=submit]"),
                             (f"/console/subscriptions/{sub['id']}", "#subscription-actions")):
            viewer.goto(path)
            assert viewer.locator(absent).count() == 0, (path, absent)
        viewer.goto(f"/console/groups/{stream}/{group}")
        assert viewer.locator("#chart-lag-history").count() == 1  # reading is allowed: the chart is there
        token = _csrf(viewer)  # a valid session and CSRF token: only the role is wrong

        def forged(path: str, form: dict[str, str]) -> None:
            resp = viewer.request.post(path, max_redirects=0, form={"csrf_token": token, **form})
            assert resp.status in (302, 403), (path, resp.status)
            if resp.status == 302:  # FAB sends a refused user away (to the index or login), not to the result
                assert "/console/" not in resp.headers.get("location", ""), (path, resp.headers)

        forged("/console/events/produce", {"stream": stream, "type": "forged.event", "data": "{}"})
        forged(f"/console/groups/{stream}/{group}/reset", {"mode": "latest"})
        forged(f"/console/subscriptions/{sub['id']}/pause", {})
        forged("/console/dead-letters/replay", {"scope": "all"})
        forged("/console/streams/create", {"name": _name("forged"), "partitions": "1"})

    events = bus.api("GET", f"/streams/{stream}/events?partition=0&offset=0&limit=100", status=200)["items"]
    assert [e["type"] for e in events] == ["order.created"] * 4  # nothing was produced
    assert bus.api("GET", f"/streams/{stream}/groups/{group}", status=200)["lag"] == 3  # nor reset
    assert bus.api("GET", f"/subscriptions/{sub['id']}", status=200)["status"] == "active"  # nor paused
    jobs = bus.api("GET", f"/replay-jobs?subscription={sub['id']}", status=200)["items"]
    assert jobs == []  # nor replayed
