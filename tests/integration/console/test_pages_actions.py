"""Console actions as an Operator: each works and lands in the same state the REST API reports."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.console.conftest import ConsoleLogin
from tests.integration.console.world import World, api, build_world
from tests.support.apps import TenantCtx
from tests.support.receiver import Receiver, fail

_SECRET_RE = re.compile(r'id="secret-value">(whsec_[^<]+)<')


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def world(app: Flask, client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx, receiver: Receiver) -> World:
    """Data on every page, in the tenant and in another tenant."""
    return build_world(app, client, tenant, other_tenant, receiver.url())


def _ok(resp: object, status: int = 302) -> str:
    code = resp.status_code  # type: ignore[attr-defined]
    html = resp.get_data(as_text=True)  # type: ignore[attr-defined]
    assert code == status, html
    return html


def test_operator_manages_streams_and_produces(world: World, client: FlaskClient,
                                               console_login: ConsoleLogin) -> None:
    op, t, name = console_login("Operator", world.tenant), world.tenant, f"{world.stream}-new"
    _ok(op.post("/console/streams/create", data={"name": name, "partitions": "2", "description": "made here"}))
    assert api(client, t, "GET", f"/streams/{name}", status=200)["description"] == "made here"
    refused = op.post("/console/streams/create", data={"name": "Not Valid"}, follow_redirects=True)
    assert "name must match" in _ok(refused, 200)

    _ok(op.post(f"/console/streams/{name}/edit", data={"partitions": "3", "retention_ms": "60000",
                                                       "description": "edited", "schema_subject": ""}))
    shown = api(client, t, "GET", f"/streams/{name}")
    assert len(shown["partitions"]) == 3
    assert shown["retention_ms"] == 60000 and shown["description"] == "edited"
    shrink = op.post(f"/console/streams/{name}/edit", data={"partitions": "1"}, follow_redirects=True)
    assert "partitions can only grow" in _ok(shrink, 200)

    page = op.get(f"/console/streams/{name}").get_data(as_text=True)
    assert page.count('<tr data-partition="') == 3 and 'class="low">0<' in page

    _ok(op.post("/console/events/produce", data={"stream": name, "type": "console.made", "key": "abc",
                                                  "data": '{"ok": true}', "headers": '{"x-origin": "console"}'}))
    events = api(client, t, "GET", f"/streams/{name}/events")["items"]
    assert [(e["type"], e["key"], e["data"], e["headers"]) for e in events] == [
        ("console.made", "abc", {"ok": True}, {"x-origin": "console"})]
    bad = op.post("/console/events/produce", data={"stream": name, "type": "x", "data": "{nope"}, follow_redirects=True)
    assert "data is not valid JSON" in _ok(bad, 200)

    not_confirmed = op.post(f"/console/streams/{name}/delete", data={"confirm": "wrong"}, follow_redirects=True)
    assert "to confirm the deletion" in _ok(not_confirmed, 200)
    api(client, t, "GET", f"/streams/{name}", status=200)
    _ok(op.post(f"/console/streams/{name}/delete", data={"confirm": name}))
    api(client, t, "GET", f"/streams/{name}", status=404)
    # Another tenant's stream cannot be touched: it is unknown here.
    api(client, world.other, "GET", f"/streams/{world.their_stream}", status=200)
    op.post(f"/console/streams/{world.their_stream}/delete", data={"confirm": world.their_stream})
    api(client, world.other, "GET", f"/streams/{world.their_stream}", status=200)


def test_operator_manages_subscriptions(world: World, client: FlaskClient, console_login: ConsoleLogin,
                                        receiver: Receiver) -> None:
    op, t = console_login("Operator", world.tenant), world.tenant
    created = _ok(op.post("/console/subscriptions/create", data={
        "stream": world.stream, "url": receiver.url("/new"), "event_types": "order.*, invoice.sent",
        "filter": "data.amount > 5", "max_in_flight": "4", "retry_schedule": "1, 2.5", "description": "hi"}), 200)
    secret = _SECRET_RE.search(created).group(1)  # type: ignore[union-attr]
    sub_id = re.search(r"Subscription ([0-9a-f-]{36}) created", created).group(1)  # type: ignore[union-attr]
    sub = api(client, t, "GET", f"/subscriptions/{sub_id}", status=200)
    assert sub["event_types"] == ["order.*", "invoice.sent"] and sub["retry_schedule"] == [1, 2.5]
    assert sub["max_in_flight"] == 4 and sub["filter"] == "data.amount > 5" and "secret" not in sub
    assert secret not in op.get(f"/console/subscriptions/{sub_id}").get_data(as_text=True)  # shown once

    _ok(op.post(f"/console/subscriptions/{sub_id}/edit", data={
        "url": receiver.url("/edited"), "event_types": "", "filter": "", "ordered": "on", "max_in_flight": "2"}))
    sub = api(client, t, "GET", f"/subscriptions/{sub_id}")
    assert (sub["url"], sub["event_types"], sub["filter"], sub["ordered"]) == (
        receiver.url("/edited"), None, None, True)

    _ok(op.post(f"/console/subscriptions/{sub_id}/pause"))
    assert api(client, t, "GET", f"/subscriptions/{sub_id}")["status"] == "paused"
    _ok(op.post(f"/console/subscriptions/{sub_id}/resume"))
    assert api(client, t, "GET", f"/subscriptions/{sub_id}")["status"] == "active"
    rotated = _ok(op.post(f"/console/subscriptions/{sub_id}/rotate", data={"grace_s": "60"}), 200)
    new_secret = _SECRET_RE.search(rotated).group(1)  # type: ignore[union-attr]
    assert new_secret != secret and len(api(client, t, "GET", f"/subscriptions/{sub_id}")["secrets"]) == 2

    # A test event goes straight to the URL, signed, and shows in the delivery log; the stream is untouched.
    before = api(client, t, "GET", f"/streams/{world.stream}")
    sent = op.post(f"/console/subscriptions/{sub_id}/test", follow_redirects=True)
    assert "HTTP 200" in _ok(sent, 200)
    (request,) = receiver.requests("/edited")
    assert request.json()["type"] == "bus.test" and len(request.headers["webhook-signature"].split()) == 2
    receiver.script("/edited", fail(503))
    assert "HTTP 503" in op.post(f"/console/subscriptions/{sub_id}/test", follow_redirects=True).get_data(as_text=True)
    log = api(client, t, "GET", f"/subscriptions/{sub_id}/deliveries")["items"]
    assert [(d["origin"], d["status"], [a["status_code"] for a in d["attempts"]]) for d in log] == [
        ("test", "discarded", [503]), ("test", "succeeded", [200])]
    assert api(client, t, "GET", f"/streams/{world.stream}") == before
    assert api(client, t, "GET", f"/subscriptions/{sub_id}")["status"] == "active"
    page = op.get(f"/console/subscriptions/{sub_id}").get_data(as_text=True)
    assert page.count('data-origin="test"') == 2 and page.count('class="attempt"') == 2

    _ok(op.post(f"/console/subscriptions/{sub_id}/recover", data={"since": "2024-01-01T00:00:00Z"}))
    assert api(client, t, "GET", "/replay-jobs")["items"][0]["kind"] == "recover"
    _ok(op.post(f"/console/subscriptions/{sub_id}/delete"))
    api(client, t, "GET", f"/subscriptions/{sub_id}", status=404)


def test_operator_replays_dead_letters_and_schedules(world: World, client: FlaskClient,
                                                     console_login: ConsoleLogin) -> None:
    op, t = console_login("Operator", world.tenant), world.tenant
    _ok(op.post("/console/dead-letters/replay", data={"ids": world.dead[:2]}))
    (job,) = api(client, t, "GET", "/replay-jobs")["items"]
    assert job["selector"] == {"ids": world.dead[:2]} and job["progress"]["total"] == 2
    foreign = op.post("/console/dead-letters/replay", data={"ids": world.their_dead[0]}, follow_redirects=True)
    assert "not dead letters of this tenant" in _ok(foreign, 200)
    _ok(op.post("/console/dead-letters/replay", data={"scope": "all", "subscription": world.sub_id,
                                                      "filter": 'type == "order.created"'}))
    window = api(client, t, "GET", "/replay-jobs")["items"][0]
    assert window["selector"]["subscription"] == world.sub_id and window["selector"]["filter"]

    jobs_page = op.get("/console/replay-jobs/").get_data(as_text=True)
    assert jobs_page.count("data-poll=") == 2  # queued jobs poll their progress
    progress = op.get(f"/console/replay-jobs/{job['id']}/progress").get_json()
    assert progress["progress"]["total"] == 2 and progress["status"] == "queued"

    _ok(op.post("/console/replay-jobs/schedule", data={"subscription": world.sub_id, "cron": "15 3 * * *",
                                                       "filter": "", "max_age_s": "3600"}))
    scheduled = api(client, t, "GET", "/replay-jobs?status=scheduled")["items"]
    assert len(scheduled) == 1 and scheduled[0]["selector"]["max_age_s"] == 3600
    bad = op.post("/console/replay-jobs/schedule", data={"subscription": world.sub_id, "cron": "every day"},
                  follow_redirects=True)
    assert "cron" in _ok(bad, 200)
    _ok(op.post(f"/console/replay-jobs/{scheduled[0]['id']}/cancel"))
    assert api(client, t, "GET", "/replay-jobs?status=scheduled")["items"] == []


def test_group_reset_shows_what_changes_before_applying(world: World, client: FlaskClient,
                                                        console_login: ConsoleLogin) -> None:
    op, t, s, g = console_login("Operator", world.tenant), world.tenant, world.stream, world.group
    lag = api(client, t, "GET", f"/streams/{s}/groups/{g}")
    ends = {p["partition"]: p["end"] for p in lag["partitions"]}
    preview = _ok(op.post(f"/console/groups/{s}/{g}/reset/preview", data={"mode": "latest"}), 200)
    for p, end in ends.items():
        row = re.search(rf'<tr data-partition="{p}"[^>]*>.*?class="before">(\d+)<.*?class="after">(\d+)<', preview,
                        re.S)
        assert row is not None and (int(row.group(1)), int(row.group(2))) == (1, end)
    assert 'name="mode" value="latest"' in preview and 'id="confirm-reset"' in preview
    assert api(client, t, "GET", f"/streams/{s}/groups/{g}") == lag  # previewing changes nothing

    _ok(op.post(f"/console/groups/{s}/{g}/reset", data={"mode": "latest"}))
    after = api(client, t, "GET", f"/streams/{s}/groups/{g}")
    assert after["lag"] == 0 and all(p["committed"] == p["end"] for p in after["partitions"])

    explicit = _ok(op.post(f"/console/groups/{s}/{g}/reset/preview", data={"mode": "offsets", "offset_0": "0"}), 200)
    assert 'id="changes-count">1<' in explicit
    _ok(op.post(f"/console/groups/{s}/{g}/reset", data={"mode": "offsets", "offset_0": "0"}))
    rows = api(client, t, "GET", f"/streams/{s}/groups/{g}")["partitions"]
    committed = {p["partition"]: p["committed"] for p in rows}
    assert committed == {0: 0, 1: ends[1]}

    timed = _ok(op.post(f"/console/groups/{s}/{g}/reset/preview", data={"mode": "time", "time": "2000-01-01T00:00"}),
                200)
    assert "first events at or after 2000-01-01T00:00:00.000Z" in timed
    beyond = op.post(f"/console/groups/{s}/{g}/reset/preview", data={"mode": "offsets", "offset_1": "999999"},
                     follow_redirects=True)
    assert "between 0 and the partition" in _ok(beyond, 200)
    # The audit records of the resets hold the offsets before and after.
    audit = op.get("/console/audit/", query_string={"action": "group.reset"}).get_data(as_text=True)
    assert audit.count('data-action="group.reset"') == 2 and '"before"' in audit


def test_api_key_is_shown_once_and_can_be_revoked(world: World, client: FlaskClient,
                                                  console_login: ConsoleLogin) -> None:
    op = console_login("Operator", world.tenant)
    created = _ok(op.post("/console/api-keys/create", data={"name": "ci-publisher", "scopes": ["publish", "consume"]}),
                  200)
    key = re.search(r'id="key-value">(ebk_[^<]+)<', created).group(1)  # type: ignore[union-attr]
    assert client.get(f"/api/v1/streams/{world.stream}", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listing = op.get("/console/api-keys/").get_data(as_text=True)
    assert "ci-publisher" in listing and key not in listing and key[:12] in listing
    keys = api(client, world.tenant, "GET", "/api-keys")["items"]
    key_id = next(k["id"] for k in keys if k["name"] == "ci-publisher")
    _ok(op.post(f"/console/api-keys/{key_id}/revoke"))
    assert client.get(f"/api/v1/streams/{world.stream}", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    no_scope = op.post("/console/api-keys/create", data={"name": "empty"}, follow_redirects=True)
    assert "scopes must be a non-empty list" in _ok(no_scope, 200)
