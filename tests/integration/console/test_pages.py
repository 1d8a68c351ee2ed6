"""Console pages: each renders the tenant's data and no other tenant's; a Viewer's POSTs are refused and change
nothing; the event browser seeks, filters, pages and tails; the audit log filters. (Actions: test_pages_actions.)"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.console.conftest import ConsoleLogin
from tests.integration.console.world import World, api, build_world, shown_events
from tests.support.apps import TenantCtx
from tests.support.receiver import Receiver


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


def _pages(w: World) -> list[tuple[str, list[str]]]:
    """Every console page with what it must show of the tenant."""
    return [
        ("/console/streams/", [w.stream, 'id="streams-table"']),
        (f"/console/streams/{w.stream}", [w.stream, 'id="partitions-table"', 'class="high">']),
        (f"/console/events/?stream={w.stream}", [w.stream, "order.created", 'id="events-data"']),
        ("/console/groups/", [w.group, 'id="groups-table"']),
        (f"/console/groups/{w.stream}/{w.group}", [w.group, 'id="lag-table"']),
        ("/console/subscriptions/", [w.sub_id]),
        (f"/console/subscriptions/{w.sub_id}", [w.sub_id, 'id="deliveries-table"']),
        ("/console/dead-letters/", [w.dead[0], 'id="dead-count">3<']),
        (f"/console/dead-letters/{w.dead[0]}", [w.dead[0], "boom", 'id="dead-letter-event"']),
        ("/console/replay-jobs/", ['id="jobs-table"']),
        ("/console/audit/", ["stream.create", w.stream]),
    ]


def test_every_page_renders_the_tenants_data_and_no_other_tenants(world: World,
                                                                    console_login: ConsoleLogin) -> None:
    viewer = console_login("Viewer", world.tenant)
    theirs = [world.their_stream, world.their_group, world.their_sub, *world.their_dead, "spy.event"]
    for path, wanted in _pages(world):
        resp = viewer.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        html = resp.get_data(as_text=True)
        for text in wanted:
            assert text in html, (path, text)
        for text in theirs:
            assert text not in html, (path, text)
        assert f"tenant {world.tenant.slug}" in html
    # Another tenant's things are unknown here, not forbidden: no existence leak.
    for path in (f"/console/streams/{world.their_stream}", f"/console/subscriptions/{world.their_sub}",
                 f"/console/dead-letters/{world.their_dead[0]}", f"/console/groups/{world.their_stream}/x",
                 f"/console/events/?stream={world.their_stream}"):
        assert viewer.get(path).status_code == 404, path


def test_api_keys_page_needs_the_manage_permission(world: World, console_login: ConsoleLogin) -> None:
    assert console_login("Viewer", world.tenant).get("/console/api-keys/").status_code == 403
    resp = console_login("Operator", world.tenant).get("/console/api-keys/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert world.tenant.keys["publish"][:12] in html and world.other.keys["publish"][:12] not in html
    assert world.tenant.keys["publish"] not in html  # only the prefix, never the key


def test_operator_and_admin_see_the_action_forms_with_a_csrf_token(world: World,
                                                                   console_login: ConsoleLogin) -> None:
    for role in ("Operator", "Admin"):
        browser = console_login(role, world.tenant)
        for path in (f"/console/streams/{world.stream}", f"/console/subscriptions/{world.sub_id}",
                     f"/console/groups/{world.stream}/{world.group}", f"/console/events/?stream={world.stream}"):
            html = browser.get(path).get_data(as_text=True)
            assert 'name="csrf_token"' in html and 'method="post"' in html, (role, path)
    viewer_html = console_login("Viewer", world.tenant).get(f"/console/streams/{world.stream}").get_data(as_text=True)
    assert 'id="delete-stream"' not in viewer_html  # hidden for Viewers (and refused on the server anyway)


def _viewer_posts(w: World, job_id: str, key_id: str) -> list[tuple[str, dict[str, str]]]:
    s, g, sub = w.stream, w.group, w.sub_id
    return [
        ("/console/streams/create", {"name": "viewer-made"}),
        (f"/console/streams/{s}/edit", {"description": "changed", "partitions": "4"}),
        (f"/console/streams/{s}/delete", {"confirm": s}),
        ("/console/events/produce", {"stream": s, "type": "viewer.event", "data": "{}"}),
        (f"/console/groups/{s}/{g}/reset/preview", {"mode": "earliest"}),
        (f"/console/groups/{s}/{g}/reset", {"mode": "earliest"}),
        ("/console/subscriptions/create", {"stream": s, "url": "http://127.0.0.1:9/x"}),
        (f"/console/subscriptions/{sub}/edit", {"url": "http://127.0.0.1:9/changed"}),
        (f"/console/subscriptions/{sub}/pause", {}),
        (f"/console/subscriptions/{sub}/resume", {}),
        (f"/console/subscriptions/{sub}/rotate", {}),
        (f"/console/subscriptions/{sub}/test", {}),
        (f"/console/subscriptions/{sub}/recover", {"since": "2024-01-01T00:00:00Z"}),
        (f"/console/subscriptions/{sub}/delete", {}),
        ("/console/dead-letters/replay", {"ids": w.dead[0]}),
        ("/console/dead-letters/replay", {"scope": "all"}),
        ("/console/replay-jobs/schedule", {"subscription": sub, "cron": "0 3 * * *"}),
        (f"/console/replay-jobs/{job_id}/cancel", {}),
        ("/console/api-keys/create", {"name": "viewer-key", "scopes": "publish"}),
        (f"/console/api-keys/{key_id}/revoke", {}),
    ]


def test_a_viewers_posts_are_refused_and_change_nothing(world: World, client: FlaskClient,
                                                        console_login: ConsoleLogin, receiver: Receiver) -> None:
    t = world.tenant
    job = api(client, t, "POST", "/replay-jobs", {"subscription": world.sub_id, "cron": "0 4 * * *"}, status=201)
    key = api(client, t, "POST", "/api-keys", {"name": "kept", "scopes": ["publish"]}, status=201)
    before_events = api(client, t, "GET", f"/streams/{world.stream}")
    before_group = api(client, t, "GET", f"/streams/{world.stream}/groups/{world.group}")
    viewer = console_login("Viewer", t)

    for path, form in _viewer_posts(world, job["id"], key["id"]):
        resp = viewer.post(path, data=form)
        assert resp.status_code == 403, (path, resp.status_code)

    assert api(client, t, "GET", f"/streams/{world.stream}") == before_events  # no edit, no event, not deleted
    api(client, t, "GET", "/streams/viewer-made", status=404)
    assert api(client, t, "GET", f"/streams/{world.stream}/groups/{world.group}") == before_group
    sub = api(client, t, "GET", f"/subscriptions/{world.sub_id}", status=200)
    assert sub["status"] == "active" and len(sub["secrets"]) == 1 and sub["url"].endswith("/hook")
    jobs = api(client, t, "GET", "/replay-jobs")["items"]
    assert [j["id"] for j in jobs] == [job["id"]] and jobs[0]["status"] == "scheduled"
    keys = api(client, t, "GET", "/api-keys")["items"]
    assert all(k["revoked_at"] is None for k in keys) and "viewer-key" not in {k["name"] for k in keys}
    assert receiver.requests() == []  # no test event went out


def test_pages_need_a_login(app: Flask) -> None:
    anonymous = app.test_client()
    for path in ("/console/streams/", "/console/events/", "/console/groups/", "/console/subscriptions/",
                 "/console/dead-letters/", "/console/replay-jobs/", "/console/audit/", "/console/api-keys/"):
        resp = anonymous.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], path
    assert anonymous.post("/console/streams/create", data={"name": "x"}).status_code == 302


def _browse(browser: FlaskClient, stream: str, **args: str) -> list[tuple[int, int]]:
    resp = browser.get("/console/events/", query_string={"stream": stream, **args})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return shown_events(resp.get_data(as_text=True))


def test_event_browser_orders_seeks_filters_and_pages(world: World, console_login: ConsoleLogin) -> None:
    viewer, s = console_login("Viewer", world.tenant), world.stream
    placed = [(r["partition"], r["offset"]) for r in world.positions]
    newest, oldest = _browse(viewer, s), _browse(viewer, s, order="oldest")
    assert sorted(newest) == sorted(oldest) == sorted(placed)
    for part in (0, 1):  # newest first by default: every partition's offsets descend (ascend when oldest first)
        assert [o for q, o in newest if q == part] == sorted((o for q, o in placed if q == part), reverse=True)
        assert [o for q, o in oldest if q == part] == sorted(o for q, o in placed if q == part)

    p = placed[3][0]
    in_p = sorted(o for q, o in placed if q == p)
    assert _browse(viewer, s, partition=str(p), order="oldest", offset=str(in_p[1])) == [(p, o) for o in in_p[1:]]
    assert _browse(viewer, s, partition=str(p), offset=str(in_p[1])) == [(p, o) for o in reversed(in_p[:2])]
    future = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")  # datetime-local, read as UTC
    assert _browse(viewer, s, order="oldest", time=future) == []
    assert len(_browse(viewer, s, time=future)) == len(placed)  # newest first up to that time: everything

    by_type = _browse(viewer, s, type="order.paid")
    assert sorted(by_type) == sorted(placed[i] for i in (2, 5))
    assert sorted(_browse(viewer, s, type="order.*", key="k3")) == sorted(placed[i] for i in (3, 5))
    assert _browse(viewer, s, q="needle") == [placed[4]]
    assert sorted(_browse(viewer, s, expr='data.amount > 100 && type == "order.created"')) == sorted(
        placed[i] for i in (1, 3))
    bad = viewer.get("/console/events/", query_string={"stream": s, "expr": "data.amount >"})
    assert bad.status_code == 200 and 'id="browse-error"' in bad.get_data(as_text=True)

    first = viewer.get("/console/events/", query_string={"stream": s, "limit": "4", "format": "json"}).get_json()
    second = viewer.get("/console/events/", query_string={"stream": s, "cursor": first["next"], "limit": "4",
                                                          "format": "json"}).get_json()
    pages = [(e["partition"], e["offset"]) for e in first["items"] + second["items"]]
    assert pages == newest and second["next"] is None


def test_event_browser_live_tail_polls_for_new_events(world: World, client: FlaskClient,
                                                      console_login: ConsoleLogin) -> None:
    viewer, s = console_login("Viewer", world.tenant), world.stream
    html = viewer.get("/console/events/", query_string={"stream": s}).get_data(as_text=True)
    assert 'id="live-tail"' in html and "data-poll-url=" in html
    page = viewer.get("/console/events/", query_string={"stream": s, "format": "json", "type": "tail.*"}).get_json()
    assert page["items"] == []
    poll = {"stream": s, "format": "json", "tail": page["tail"]}
    assert viewer.get("/console/events/", query_string=poll).get_json()["items"] == []
    api(client, world.tenant, "POST", f"/streams/{s}/events",
        {"events": [{"type": "tail.one", "data": {}}, {"type": "skipped", "data": {}}]}, "publish", 201)
    got = viewer.get("/console/events/", query_string=poll).get_json()
    assert [e["type"] for e in got["items"]] == ["tail.one"]  # the page's filters follow the tail
    again = viewer.get("/console/events/", query_string={**poll, "tail": got["cursor"]}).get_json()
    assert again["items"] == []


def test_audit_log_filters_by_user_action_target_and_time(world: World, client: FlaskClient,
                                                          console_login: ConsoleLogin) -> None:
    operator = console_login("Operator", world.tenant)
    operator.post("/console/streams/create", data={"name": f"{world.stream}-b", "partitions": "1"})
    operator.post(f"/console/subscriptions/{world.sub_id}/pause")

    def rows(**args: str) -> str:
        resp = operator.get("/console/audit/", query_string=args)
        assert resp.status_code == 200
        return resp.get_data(as_text=True)

    everything = rows()
    assert "stream.create" in everything and "subscription.pause" in everything
    assert world.their_stream not in everything  # the other tenant's records
    streams_only = rows(action="stream.*")
    assert "stream.create" in streams_only and "subscription.pause" not in streams_only
    assert 'data-action="subscription.pause"' in rows(action="subscription.pause")
    by_target = rows(target=world.sub_id)
    assert "subscription.pause" in by_target and "stream.create" not in by_target
    by_user = rows(actor=operator.username)  # type: ignore[attr-defined]
    assert "stream.create" in by_user and "subscription.pause" in by_user and "<td>apikey:" not in by_user
    assert "No audit records match" in rows(actor="nobody-at-all")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert "No audit records match" in rows(since=future)
    assert "stream.create" in rows(until=future, target_type="stream")
    bad = rows(since="yesterday")
    assert "since must be an RFC 3339 time" in bad
