"""Pull consumer groups over REST: fetch, commit, at-least-once, lag, listing, resets and their audit."""
from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.integration.api.test_events import error, events, make_stream, publish
from tests.support.apps import TenantCtx


def fetch(client: FlaskClient, tenant: TenantCtx, stream: str, group: str, body: Any = None,
          scope: str = "consume") -> Any:
    kwargs = {} if body is None else {"json": body}
    return client.post(f"/api/v1/streams/{stream}/groups/{group}/fetch", headers=tenant.headers(scope), **kwargs)


def commit(client: FlaskClient, tenant: TenantCtx, stream: str, group: str, offsets: Any) -> Any:
    return client.post(f"/api/v1/streams/{stream}/groups/{group}/commit", json={"offsets": offsets},
                       headers=tenant.headers("consume"))


def reset(client: FlaskClient, tenant: TenantCtx, stream: str, group: str, to: Any, scope: str = "manage") -> Any:
    return client.post(f"/api/v1/streams/{stream}/groups/{group}/reset", json={"to": to},
                       headers=tenant.headers(scope))


def lag(client: FlaskClient, tenant: TenantCtx, stream: str, group: str) -> dict[str, Any]:
    resp = client.get(f"/api/v1/streams/{stream}/groups/{group}", headers=tenant.headers("consume"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def positions(items: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return sorted((e["partition"], e["offset"]) for e in items)


def next_offsets(items: list[dict[str, Any]]) -> list[dict[str, int]]:
    """The commit for everything in ``items``: per partition, the last offset + 1."""
    last: dict[int, int] = {}
    for e in items:
        last[e["partition"]] = max(last.get(e["partition"], -1), e["offset"])
    return [{"partition": p, "offset": o + 1} for p, o in sorted(last.items())]


def test_fetch_commit_and_at_least_once(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    publish(client, tenant, stream, {"events": [{"type": "t", "data": {"i": i}, "key": f"k{i}"} for i in range(10)]})
    first = fetch(client, tenant, stream, "billing", {"max": 4, "wait_ms": 0})
    assert first.status_code == 200, first.get_data(as_text=True)
    items = first.get_json()["items"]
    assert len(items) == 4
    # No commit: the same events again (at least once).
    again = fetch(client, tenant, stream, "billing", {"max": 4, "wait_ms": 0}).get_json()["items"]
    assert positions(again) == positions(items)
    assert commit(client, tenant, stream, "billing", next_offsets(items)).status_code == 204
    rest: list[dict[str, Any]] = []
    while True:
        page = fetch(client, tenant, stream, "billing", {"max": 3, "wait_ms": 0}).get_json()["items"]
        if not page:
            break
        assert not set(positions(page)) & set(positions(items + rest))
        rest.extend(page)
        assert commit(client, tenant, stream, "billing", next_offsets(page)).status_code == 204
    assert sorted(e["data"]["i"] for e in items + rest) == list(range(10))
    view = lag(client, tenant, stream, "billing")
    assert view["group"] == "billing" and view["stream"] == stream and view["lag"] == 0
    assert sum(p["end"] for p in view["partitions"]) == 10
    # Another group starts from the beginning on its own.
    assert len(fetch(client, tenant, stream, "audit", {"max": 100, "wait_ms": 0}).get_json()["items"]) == 10


def test_fetch_per_partition_order_and_partition_filter(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=3)
    publish(client, tenant, stream, {"events": [{"type": "t", "data": i, "key": f"k{i % 4}"} for i in range(40)]})
    items = fetch(client, tenant, stream, "g", {"max": 100, "wait_ms": 0}).get_json()["items"]
    assert len(items) == 40
    for p in range(3):
        offsets = [e["offset"] for e in items if e["partition"] == p]
        assert offsets == sorted(offsets)
    only = fetch(client, tenant, stream, "g", {"partitions": [1], "wait_ms": 0}).get_json()["items"]
    assert only and {e["partition"] for e in only} == {1}


def test_fetch_defaults_and_long_poll(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=1)
    started = time.monotonic()
    resp = fetch(client, tenant, stream, "g", {"wait_ms": 300})
    assert resp.status_code == 200 and resp.get_json() == {"items": []}
    assert time.monotonic() - started >= 0.25
    publish(client, tenant, stream, {"events": events(3)})
    started = time.monotonic()
    resp = fetch(client, tenant, stream, "g")  # no body: API.md's defaults; returns at once with events
    assert len(resp.get_json()["items"]) == 3
    assert time.monotonic() - started < 1.0


def test_fetch_bad_input(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    for body, code in [
        ({"max": 0}, "invalid_field"),
        ({"max": 10_001}, "invalid_field"),
        ({"max": "5"}, "invalid_field"),
        ({"wait_ms": -1}, "invalid_field"),
        ({"wait_ms": 30_001}, "invalid_field"),
        ({"partitions": [2]}, "invalid_partition"),
        ({"partitions": [-1]}, "invalid_partition"),
        ({"partitions": [10**30]}, "invalid_partition"),
        ({"partitions": []}, "invalid_field"),
        ({"partitions": "0"}, "invalid_field"),
        ({"bogus": 1}, "unknown_field"),
    ]:
        error(fetch(client, tenant, stream, "g", body), 422, code)
    error(fetch(client, tenant, stream, "Bad.Group"), 422, "invalid_field")
    error(fetch(client, tenant, stream, "g", [1]), 400)
    error(fetch(client, tenant, "missing", "g", {}), 404, "stream_not_found")


def test_commit_bad_offsets(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    publish(client, tenant, stream, {"events": events(3, key="k")})
    for offsets, code in [
        ([{"partition": 0, "offset": -1}], "invalid_offset"),
        ([{"partition": 0, "offset": 1000}], "invalid_offset"),  # beyond the end
        ([{"partition": 0, "offset": 2**70}], "invalid_offset"),
        ([{"partition": 0, "offset": 1.5}], "invalid_offset"),
        ([{"partition": 2, "offset": 0}], "invalid_partition"),
        ([{"partition": -1, "offset": 0}], "invalid_partition"),
        ([{"partition": 0, "offset": 0}, {"partition": 0, "offset": 0}], "invalid_partition"),
        ([{"partition": 0}], "invalid_field"),
        ([], "invalid_field"),
        ("all", "invalid_field"),
    ]:
        error(commit(client, tenant, stream, "g", offsets), 422, code)
    assert all(p["committed"] is None for p in lag(client, tenant, stream, "g")["partitions"])
    error(client.post(f"/api/v1/streams/{stream}/groups/g/commit", headers=tenant.headers("consume")), 400)
    # The end itself is a valid commit: nothing left to read.
    view = lag(client, tenant, stream, "g")
    ends = [{"partition": p["partition"], "offset": p["end"]} for p in view["partitions"]]
    assert commit(client, tenant, stream, "g", ends).status_code == 204
    assert lag(client, tenant, stream, "g")["lag"] == 0


def test_lag_of_a_new_group_and_after_commits(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    publish(client, tenant, stream, {"events": events(5)})
    view = lag(client, tenant, stream, "fresh")
    assert view["lag"] == 5
    assert [p["partition"] for p in view["partitions"]] == [0, 1]
    assert all(p["committed"] is None and p["lag"] == p["end"] for p in view["partitions"])
    commit(client, tenant, stream, "fresh", [{"partition": 0, "offset": 1}])
    p0 = lag(client, tenant, stream, "fresh")["partitions"][0]
    assert p0["committed"] == 1 and p0["lag"] == p0["end"] - 1


def test_list_groups_is_per_tenant(client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    a, b = make_stream(client, tenant), make_stream(client, tenant)
    publish(client, tenant, a, {"events": events(2)})
    publish(client, tenant, b, {"events": events(2)})
    for stream, group in ((a, "g1"), (a, "g2"), (b, "g1")):
        fetched = fetch(client, tenant, stream, group, {"wait_ms": 0}).get_json()["items"]
        commit(client, tenant, stream, group, next_offsets(fetched))
    theirs = make_stream(client, other_tenant)
    publish(client, other_tenant, theirs, {"events": events(1)})
    commit(client, other_tenant, theirs, "g1", [{"partition": 0, "offset": 0}])

    resp = client.get("/api/v1/groups?limit=2", headers=tenant.headers("publish"))
    assert resp.status_code == 200
    page = resp.get_json()
    seen = [(g["stream"], g["group"]) for g in page["items"]]
    resp = client.get(f"/api/v1/groups?limit=2&cursor={page['next']}", headers=tenant.headers())
    seen += [(g["stream"], g["group"]) for g in resp.get_json()["items"]]
    assert resp.get_json()["next"] is None
    assert seen == sorted([(a, "g1"), (a, "g2"), (b, "g1")])
    assert all(g["lag"] == 0 for g in page["items"]), page
    only_b = client.get(f"/api/v1/groups?stream={b}", headers=tenant.headers()).get_json()["items"]
    assert [(g["stream"], g["group"]) for g in only_b] == [(b, "g1")]
    mine = client.get("/api/v1/groups", headers=other_tenant.headers()).get_json()["items"]
    assert [(g["stream"], g["group"]) for g in mine] == [(theirs, "g1")]


def test_reset_every_target_and_audit(app: Flask, client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    publish(client, tenant, stream, {"events": events(4, key="a")})
    time.sleep(0.02)
    cut = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.02)
    publish(client, tenant, stream, {"events": events(2, key="a", start=4)})
    ends = {p["partition"]: p["end"] for p in lag(client, tenant, stream, "g")["partitions"]}
    busy = max(ends, key=lambda p: ends[p])  # the partition of key "a"

    def committed() -> dict[int, int | None]:
        return {p["partition"]: p["committed"] for p in lag(client, tenant, stream, "g")["partitions"]}

    resp = reset(client, tenant, stream, "g", "latest")
    assert resp.status_code == 200 and resp.get_json()["lag"] == 0
    assert committed() == ends
    assert reset(client, tenant, stream, "g", "earliest").get_json()["lag"] == 6
    assert committed() == {0: 0, 1: 0}
    reset(client, tenant, stream, "g", {"time": cut})
    assert committed()[busy] == 4
    items = fetch(client, tenant, stream, "g", {"wait_ms": 0}).get_json()["items"]
    assert [e["data"]["i"] for e in items] == [4, 5]
    reset(client, tenant, stream, "g", {"offsets": [{"partition": busy, "offset": 1}]})
    assert committed()[busy] == 1

    for to, code in [("middle", "invalid_field"), ({"time": "soon"}, "invalid_field"), ({"time": 5}, "invalid_field"),
                     ({"offsets": [{"partition": busy, "offset": 99}]}, "invalid_offset"),
                     ({"offsets": [{"partition": 7, "offset": 0}]}, "invalid_partition"),
                     ({"offsets": []}, "invalid_field"), ({"earliest": True}, "invalid_field"),
                     (None, "invalid_field")]:
        error(reset(client, tenant, stream, "g", to), 422, code)
    assert committed()[busy] == 1
    error(reset(client, tenant, stream, "g", "earliest", scope="consume"), 403, "forbidden")
    error(reset(client, tenant, stream, "g", "earliest", scope="publish"), 403, "forbidden")

    from app.extensions import db
    from app.models import AuditRecord, Tenant

    with app.app_context():
        tenant_id = db.session.execute(select(Tenant.id).where(Tenant.slug == tenant.slug)).scalar_one()
        records = db.session.execute(
            select(AuditRecord).where(AuditRecord.tenant_id == tenant_id, AuditRecord.action == "group.reset")
            .order_by(AuditRecord.id)
        ).scalars().all()
        assert [r.details["to"] for r in records] == ["latest", "earliest", {"time": cut},
                                                     {"offsets": [{"partition": busy, "offset": 1}]}]
        assert records[0].target == f"{stream}/g" and records[0].target_type == "group"
        assert records[0].details["before"] == []
        assert records[1].details["before"] == [{"partition": p, "offset": ends[p]} for p in (0, 1)]
        assert records[1].details["after"] == [{"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}]
        assert records[-1].details["after"] == [{"partition": busy, "offset": 1}]
        assert all(r.actor.startswith("apikey:") for r in records)


def test_group_permissions(client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    error(fetch(client, tenant, stream, "g", {"wait_ms": 0}, scope="publish"), 403, "forbidden")
    error(fetch(client, tenant, stream, "g", {"wait_ms": 0}, scope="manage"), 403, "forbidden")
    error(client.post(f"/api/v1/streams/{stream}/groups/g/commit", json={"offsets": []},
                      headers=tenant.headers("publish")), 403)
    error(client.post(f"/api/v1/streams/{stream}/groups/g/fetch", json={}), 401)
    assert client.get(f"/api/v1/streams/{stream}/groups/g", headers=tenant.headers("publish")).status_code == 200
    # Another tenant's stream does not exist for us.
    error(fetch(client, other_tenant, stream, "g", {"wait_ms": 0}), 404, "stream_not_found")
    error(client.get(f"/api/v1/streams/{stream}/groups/g", headers=other_tenant.headers()), 404)
    error(reset(client, other_tenant, stream, "g", "earliest"), 404)
