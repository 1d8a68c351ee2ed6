"""The console's Alerts page: rules and open alerts for every role; only Operators and Admins change rules."""
from __future__ import annotations

from flask.testing import FlaskClient

from tests.integration.alerts.conftest import AlertBus
from tests.integration.api.test_auth import PASSWORD, make_user
from tests.support.apps import ADMIN_PASSWORD, login


def _browser(bus: AlertBus, role: str) -> FlaskClient:
    """A new user of ``role`` in the bus's tenant, signed in at /login/."""
    username = make_user(bus.client, login(bus.client, "admin", ADMIN_PASSWORD), role, [bus.tenant.slug])
    browser = bus.app.test_client()
    resp = browser.post("/login/", data={"username": username, "password": PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return browser


def test_page_shows_rules_and_firing_alerts(bus: AlertBus) -> None:
    stream = bus.stream()
    bus.publish(stream, 1)
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "billing"}, threshold=0)
    bus.evaluate()
    viewer = _browser(bus, "Viewer")
    resp = viewer.get("/console/alerts/")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert rule["name"] in page and f'data-rule="{rule["id"]}"' in page
    assert 'id="open-alerts"' in page and "firing" in page
    assert 'id="create-alert-rule"' not in page  # a Viewer is offered no form (and refused anyway, below)


def test_operator_creates_edits_silences_and_deletes_through_the_forms(bus: AlertBus) -> None:
    stream = bus.stream()
    operator = _browser(bus, "Operator")
    assert 'id="create-alert-rule"' in operator.get("/console/alerts/").get_data(as_text=True)
    resp = operator.post("/console/alerts/create", data={
        "name": "console lag", "kind": "consumer_lag", "target_stream": stream, "target_group": "billing",
        "threshold": "10", "for_s": "30", "notify": "http://127.0.0.1:9/alerts\n"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "whsec_" in page  # the new webhook's secret, shown this once
    [rule] = bus.api("GET", "/alert-rules", status=200)["items"]
    assert rule["target"] == {"stream": stream, "group": "billing"} and rule["threshold"] == 10.0
    assert rule["for_s"] == 30 and rule["notify"][0]["webhook"] == "http://127.0.0.1:9/alerts"
    assert "whsec_" not in operator.get("/console/alerts/").get_data(as_text=True)
    operator.post(f"/console/alerts/{rule['id']}/edit", data={
        "name": "console lag", "target_stream": stream, "target_group": "billing", "threshold": "20",
        "for_s": "30", "notify": "http://127.0.0.1:9/alerts", "enabled": "on"})
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["threshold"] == 20.0
    operator.post(f"/console/alerts/{rule['id']}/silence", data={"minutes": "15"})
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["silenced"] is True
    operator.post(f"/console/alerts/{rule['id']}/delete")
    bus.api("GET", f"/alert-rules/{rule['id']}", status=404)


def test_invalid_form_is_flashed_not_created(bus: AlertBus) -> None:
    operator = _browser(bus, "Operator")
    resp = operator.post("/console/alerts/create", data={"name": "bad", "kind": "consumer_lag",
                                                         "target_stream": "nope", "threshold": "x"},
                         follow_redirects=True)
    assert resp.status_code == 200 and "threshold must be a number" in resp.get_data(as_text=True)
    assert bus.api("GET", "/alert-rules", status=200)["items"] == []


def test_viewer_posts_are_refused(bus: AlertBus) -> None:
    rule = bus.rule("dead_letters", {}, threshold=5)
    viewer = _browser(bus, "Viewer")
    for path, data in (("/console/alerts/create", {"name": "v", "kind": "dead_letters", "threshold": "1"}),
                       (f"/console/alerts/{rule['id']}/edit", {"name": "v", "threshold": "1"}),
                       (f"/console/alerts/{rule['id']}/silence", {"minutes": "10"}),
                       (f"/console/alerts/{rule['id']}/delete", {})):
        resp = viewer.post(path, data=data)
        assert resp.status_code == 403, (path, resp.status_code)
    after = bus.api("GET", f"/alert-rules/{rule['id']}", status=200)
    assert after["name"] == rule["name"] and after["threshold"] == 5.0 and after["silenced"] is False
    assert [r["id"] for r in bus.api("GET", "/alert-rules", status=200)["items"]] == [rule["id"]]
