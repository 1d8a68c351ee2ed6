"""``/api/v1/alert-rules`` and ``/api/v1/alerts``: the contract's shapes, validation (422), 404s, roles and audit."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.alerts.conftest import AlertBus
from tests.integration.api.test_auth import PASSWORD, make_user
from tests.support.apps import ADMIN_PASSWORD, login
from tests.support.webhooks import HOOK_URL


def test_create_show_list_patch_delete(bus: AlertBus) -> None:
    stream = bus.stream()
    body = {"name": "orders lag", "kind": "consumer_lag",
            "target": {"stream": stream, "group": "billing", "subscription": None},
            "threshold": 1000, "for_s": 60, "notify": [{"email": "Oncall@Example.com"}]}
    rule = bus.api("POST", "/alert-rules", body, 201)
    assert rule["name"] == "orders lag" and rule["kind"] == "consumer_lag"
    assert rule["target"] == {"stream": stream, "group": "billing"}  # nulls dropped
    assert rule["threshold"] == 1000.0 and rule["for_s"] == 60 and rule["window_s"] == 300
    assert rule["renotify_s"] is None and rule["enabled"] is True and rule["state"] == "ok"
    assert rule["notify"] == [{"email": "Oncall@example.com"}]  # the domain normalised
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["id"] == rule["id"]
    listed = bus.api("GET", "/alert-rules", status=200)
    assert [r["id"] for r in listed["items"]] == [rule["id"]] and listed["next"] is None
    patched = bus.api("PATCH", f"/alert-rules/{rule['id']}", {"threshold": 5, "renotify_s": 600}, 200)
    assert patched["threshold"] == 5.0 and patched["renotify_s"] == 600 and patched["for_s"] == 60
    bus.api("DELETE", f"/alert-rules/{rule['id']}", None, 204)
    bus.api("GET", f"/alert-rules/{rule['id']}", status=404)
    assert bus.api("GET", "/alert-rules", status=200)["items"] == []


def test_rule_changes_are_audited(bus: AlertBus) -> None:
    from app.extensions import db
    from app.models import AuditRecord

    stream = bus.stream()
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=1)
    bus.api("PATCH", f"/alert-rules/{rule['id']}", {"threshold": 2}, 200)
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    bus.api("POST", f"/alert-rules/{rule['id']}/silence", {"until": until}, 200)
    bus.api("DELETE", f"/alert-rules/{rule['id']}", None, 204)
    with bus.app.app_context():
        actions = list(db.session.execute(select(AuditRecord.action).where(
            AuditRecord.target == rule["id"]).order_by(AuditRecord.id)).scalars())
    assert actions == ["alert_rule.create", "alert_rule.update", "alert_rule.silence", "alert_rule.delete"]


def _valid(bus: AlertBus) -> dict[str, Any]:
    return {"name": f"r-{uuid.uuid4().hex[:6]}", "kind": "dead_letters", "target": {}, "threshold": 1}


@pytest.mark.parametrize(("change", "code"), [
    ({"kind": "nope"}, "invalid_field"),
    ({"kind": None}, "invalid_field"),
    ({"name": "  "}, "invalid_field"),
    ({"threshold": -1}, "invalid_field"),
    ({"threshold": "5"}, "invalid_field"),
    ({"threshold": True}, "invalid_field"),
    ({"kind": "failure_rate", "threshold": 101}, "invalid_field"),
    ({"for_s": -1}, "invalid_field"),
    ({"window_s": 10}, "invalid_field"),
    ({"renotify_s": 5}, "invalid_field"),
    ({"target": []}, "invalid_target"),
    ({"target": {"group": "g"}}, "invalid_target"),
    ({"target": {"stream": 5}}, "invalid_target"),
    ({"target": {"process": "worker"}}, "invalid_target"),
    ({"kind": "consumer_lag", "target": {"stream": "x"}}, "invalid_target"),
    ({"kind": "throughput_above", "target": {}}, "invalid_target"),
    ({"kind": "worker_silent", "target": {"process": "scheduler"}}, "invalid_target"),
    ({"notify": {"webhook": HOOK_URL}}, "invalid_field"),
    ({"notify": [{"sms": "+1"}]}, "invalid_field"),
    ({"notify": [{"webhook": "ftp://x"}]}, "unsafe_url"),
    ({"notify": [{"email": "not an address"}]}, "invalid_field"),
    ({"notify": [{"email": "a@example.com"}, {"email": "a@example.com"}]}, "invalid_field"),
    ({"colour": "red"}, "unknown_field"),
])
def test_invalid_bodies_are_422(bus: AlertBus, change: dict[str, Any], code: str) -> None:
    answer = bus.api("POST", "/alert-rules", {**_valid(bus), **change}, 422)
    assert answer["error"]["code"] == code
    assert bus.api("GET", "/alert-rules", status=200)["items"] == []


def test_missing_threshold_is_422_where_it_has_no_default(bus: AlertBus) -> None:
    body = _valid(bus)
    del body["threshold"]
    assert bus.api("POST", "/alert-rules", body, 422)["error"]["details"]["field"] == "threshold"
    silent = bus.api("POST", "/alert-rules", {**body, "kind": "worker_silent", "target": {"process": "beat"}}, 201)
    assert silent["threshold"] == 60.0


def test_email_needs_smtp(bus: AlertBus) -> None:
    saved = bus.app.config["SMTP_HOST"]
    bus.app.config["SMTP_HOST"] = None
    try:
        answer = bus.api("POST", "/alert-rules", {**_valid(bus), "notify": [{"email": "a@example.com"}]}, 422)
    finally:
        bus.app.config["SMTP_HOST"] = saved
    assert answer["error"]["code"] == "smtp_not_configured"


def test_duplicate_name_is_409_and_kind_cannot_change(bus: AlertBus) -> None:
    body = _valid(bus)
    rule = bus.api("POST", "/alert-rules", body, 201)
    assert bus.api("POST", "/alert-rules", body, 409)["error"]["code"] == "alert_rule_exists"
    other = bus.api("POST", "/alert-rules", _valid(bus), 201)
    assert bus.api("PATCH", f"/alert-rules/{other['id']}", {"name": body["name"]}, 409)
    answer = bus.api("PATCH", f"/alert-rules/{rule['id']}", {"kind": "failure_rate"}, 422)
    assert answer["error"]["code"] == "immutable_field"
    assert bus.api("PATCH", f"/alert-rules/{rule['id']}", {"threshold": -3}, 422)["error"]["code"] == "invalid_field"


def test_unknown_targets_and_rules_are_404(bus: AlertBus) -> None:
    missing = str(uuid.uuid4())
    answer = bus.api("POST", "/alert-rules", {**_valid(bus), "target": {"stream": "no-such"}}, 404)
    assert answer["error"]["code"] == "stream_not_found"
    answer = bus.api("POST", "/alert-rules", {**_valid(bus), "target": {"subscription": missing}}, 404)
    assert answer["error"]["code"] == "subscription_not_found"
    for method, path, body in (("GET", f"/alert-rules/{missing}", None), ("PATCH", f"/alert-rules/{missing}", {}),
                               ("DELETE", f"/alert-rules/{missing}", None),
                               ("POST", f"/alert-rules/{missing}/silence", {"until": None})):
        assert bus.api(method, path, body, 404)["error"]["code"] == "alert_rule_not_found"


def test_silence_validation(bus: AlertBus) -> None:
    rule = bus.api("POST", "/alert-rules", _valid(bus), 201)
    path = f"/alert-rules/{rule['id']}/silence"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert bus.api("POST", path, {"until": past}, 422)["error"]["details"]["field"] == "until"
    assert bus.api("POST", path, {"until": "tomorrow"}, 422)["error"]["details"]["field"] == "until"
    assert bus.api("POST", path, {}, 422)["error"]["details"]["field"] == "until"
    until = datetime.now(UTC) + timedelta(minutes=30)
    silenced = bus.api("POST", path, {"until": until.isoformat()}, 200)
    assert silenced["silenced"] is True and silenced["silenced_until"].startswith(until.strftime("%Y-%m-%dT%H:%M"))


def test_alerts_list_filters_by_state(bus: AlertBus) -> None:
    assert bus.api("GET", "/alerts?state=burning", status=400)["error"]["details"]["param"] == "state"
    stream = bus.stream()
    bus.publish(stream, 1)
    rule = bus.rule("consumer_lag", {"stream": stream, "group": "g"}, threshold=0)
    bus.evaluate()
    [alert] = bus.alerts("firing")
    assert {k: alert[k] for k in ("rule", "state", "value")} == {"rule": rule["id"], "state": "firing", "value": 1.0}
    assert alert["since"] is not None and alert["rule_name"] == rule["name"]
    assert bus.alerts("resolved") == []
    assert bus.api("GET", f"/alerts?rule={rule['id']}", status=200)["items"][0]["id"] == alert["id"]


def test_viewer_and_narrow_keys_may_read_but_not_change(bus: AlertBus) -> None:
    admin = login(bus.client, "admin", ADMIN_PASSWORD)
    viewer = login(bus.client, make_user(bus.client, admin, "Viewer", [bus.tenant.slug]), PASSWORD)
    rule = bus.api("POST", "/alert-rules", _valid(bus), 201)
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert bus.client.get("/api/v1/alert-rules", headers=as_viewer).status_code == 200
    assert bus.client.get("/api/v1/alerts", headers=as_viewer).status_code == 200
    for method, path in (("POST", "/api/v1/alert-rules"), ("PATCH", f"/api/v1/alert-rules/{rule['id']}"),
                         ("DELETE", f"/api/v1/alert-rules/{rule['id']}"),
                         ("POST", f"/api/v1/alert-rules/{rule['id']}/silence")):
        for headers in (as_viewer, bus.tenant.headers("publish")):
            resp = bus.client.open(path, method=method, json=_valid(bus), headers=headers)
            assert resp.status_code == 403, (method, path, resp.get_data(as_text=True))
    assert bus.client.get("/api/v1/alert-rules").status_code == 401
    assert bus.api("GET", f"/alert-rules/{rule['id']}", status=200)["threshold"] == 1.0
