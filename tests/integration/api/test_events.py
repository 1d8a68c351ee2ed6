"""Publishing and reading events over the REST API: order, paging, filters, Idempotency-Key, permissions."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from tests.support.apps import TenantCtx

# -- helpers shared with the other test modules of this package ---------------------------------------


def make_stream(client: FlaskClient, tenant: TenantCtx, partitions: int = 3, name: str | None = None) -> str:
    """Create a stream in ``tenant``; return its name."""
    name = name or f"s-{uuid.uuid4().hex[:8]}"
    resp = client.post("/api/v1/streams", json={"name": name, "partitions": partitions}, headers=tenant.headers())
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return name


def publish(client: FlaskClient, tenant: TenantCtx, stream: str, body: Any, **headers: str) -> Any:
    """POST events with the publish key."""
    return client.post(f"/api/v1/streams/{stream}/events", json=body,
                       headers={**tenant.headers("publish"), **headers})


def highs(client: FlaskClient, tenant: TenantCtx, stream: str) -> list[int]:
    """High watermark of every partition."""
    resp = client.get(f"/api/v1/streams/{stream}", headers=tenant.headers())
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [p["high"] for p in resp.get_json()["partitions"]]


def events(n: int, key: str | None = None, type_: str = "order.created", start: int = 0) -> list[dict[str, Any]]:
    """``n`` valid events with ``data.i`` = start..start+n-1."""
    out = [{"type": type_, "data": {"i": start + i}} for i in range(n)]
    if key is not None:
        for e in out:
            e["key"] = key
    return out


def list_all(client: FlaskClient, tenant: TenantCtx, stream: str, query: str = "", limit: int = 7) -> list[dict]:
    """Follow ``next`` from the first page to the end; return every item."""
    resp = client.get(f"/api/v1/streams/{stream}/events?limit={limit}{query}", headers=tenant.headers("consume"))
    items: list[dict] = []
    for _ in range(1000):
        assert resp.status_code == 200, resp.get_data(as_text=True)
        page = resp.get_json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        if page["next"] is None:
            return items
        resp = client.get(f"/api/v1/streams/{stream}/events?limit={limit}&cursor={page['next']}",
                          headers=tenant.headers("consume"))
    raise AssertionError("paging never ended")


def error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert API.md's error body with ``status`` (and ``code``); return the error."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    err = resp.get_json()["error"]
    if code is not None:
        assert err["code"] == code, err
    return err


# -- publish ------------------------------------------------------------------------------------------


def test_publish_one_event_returns_its_position(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    resp = publish(client, tenant, stream, {"type": "order.created", "data": {"n": 1}, "id": "e-1", "key": "k"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    [result] = resp.get_json()["results"]
    assert result["id"] == "e-1" and result["offset"] == 0
    shown = client.get(f"/api/v1/streams/{stream}/events/{result['partition']}/0", headers=tenant.headers())
    assert shown.status_code == 200
    event = shown.get_json()
    assert (event["id"], event["type"], event["data"], event["key"]) == ("e-1", "order.created", {"n": 1}, "k")
    assert event["partition"] == result["partition"] and event["offset"] == 0
    assert event["source"] == "/" and event["time"].endswith("Z")


def test_batch_keeps_order_per_key_and_assigns_ids(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    resp = publish(client, tenant, stream, {"events": events(20, key="customer-7")})
    assert resp.status_code == 201
    results = resp.get_json()["results"]
    assert len({r["partition"] for r in results}) == 1  # one key, one partition
    assert [r["offset"] for r in results] == list(range(20))
    assert all(uuid.UUID(r["id"]) for r in results)
    partition = results[0]["partition"]
    items = list_all(client, tenant, stream, f"&partition={partition}")
    assert [e["data"]["i"] for e in items] == list(range(20))
    assert [e["id"] for e in items] == [r["id"] for r in results]


def test_cloudevents_json_array_is_a_batch(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=1)
    resp = client.post(f"/api/v1/streams/{stream}/events", data=b'[{"type":"a","data":1},{"type":"b","data":2}]',
                       content_type="application/cloudevents-batch+json", headers=tenant.headers("publish"))
    assert resp.status_code == 201
    assert [r["offset"] for r in resp.get_json()["results"]] == [0, 1]


def test_publish_counts_in_metrics(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    labels = {"tenant": tenant.slug, "stream": stream}
    before = REGISTRY.get_sample_value("bus_events_published_total", labels) or 0
    assert publish(client, tenant, stream, {"events": events(7)}).status_code == 201
    assert REGISTRY.get_sample_value("bus_events_published_total", labels) == before + 7
    assert "bus_events_published_total" in client.get("/metrics").get_data(as_text=True)


def test_unknown_and_foreign_streams_are_404(client: FlaskClient, tenant: TenantCtx, other_tenant: TenantCtx) -> None:
    stream = make_stream(client, other_tenant)
    for name in ("nope", stream):  # another tenant's stream: no existence leak
        error(publish(client, tenant, name, {"type": "a", "data": 1}), 404, "stream_not_found")
        error(client.get(f"/api/v1/streams/{name}/events", headers=tenant.headers()), 404, "stream_not_found")
        error(client.get(f"/api/v1/streams/{name}/events/0/0", headers=tenant.headers()), 404, "stream_not_found")


def test_permissions(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    error(client.post(f"/api/v1/streams/{stream}/events", json={"type": "a", "data": 1}), 401)
    error(client.post(f"/api/v1/streams/{stream}/events", json={"type": "a", "data": 1},
                      headers=tenant.headers("consume")), 403, "forbidden")
    error(client.post(f"/api/v1/streams/{stream}/events", json={"type": "a", "data": 1},
                      headers={"Authorization": "Bearer ebk_not-a-key"}), 401)
    for scope in ("publish", "consume", "manage"):  # every scope may read
        assert client.get(f"/api/v1/streams/{stream}/events", headers=tenant.headers(scope)).status_code == 200
    assert highs(client, tenant, stream) == [0, 0, 0]


# -- list and show ------------------------------------------------------------------------------------


def test_list_all_partitions_pages_every_event_once_in_offset_order(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=4)
    batch = [{"type": "t", "data": {"i": i}, "key": f"k{i % 5}"} for i in range(60)]
    assert publish(client, tenant, stream, {"events": batch}).status_code == 201
    items = list_all(client, tenant, stream, limit=7)
    assert sorted(e["data"]["i"] for e in items) == list(range(60))
    by_partition: dict[int, list[int]] = {}
    for e in items:
        by_partition.setdefault(e["partition"], []).append(e["offset"])
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # offset order, no gap, no repeat


def test_list_is_fair_across_partitions(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    keys = _keys_for_partitions(client, tenant, stream, 2)
    publish(client, tenant, stream, {"events": events(30, key=keys[0])})
    publish(client, tenant, stream, {"events": events(30, key=keys[1])})
    page = client.get(f"/api/v1/streams/{stream}/events?limit=10", headers=tenant.headers()).get_json()
    counts = [sum(1 for e in page["items"] if e["partition"] == p) for p in (0, 1)]
    assert counts == [5, 5]
    # A partition that runs dry gives its share to the others.
    lopsided = make_stream(client, tenant, partitions=2)
    publish(client, tenant, lopsided, {"events": events(30, key=keys[0])})
    publish(client, tenant, lopsided, {"events": events(2, key=keys[1])})
    page = client.get(f"/api/v1/streams/{lopsided}/events?limit=10", headers=tenant.headers()).get_json()
    assert [sum(1 for e in page["items"] if e["partition"] == p) for p in (0, 1)] == [8, 2]
    assert page["next"] is not None


def _keys_for_partitions(client: FlaskClient, tenant: TenantCtx, stream: str, partitions: int) -> list[str]:
    """A key landing in each partition, found by publishing to a scratch stream of the same size."""
    scratch = make_stream(client, tenant, partitions=partitions)
    found: dict[int, str] = {}
    for i in range(64):
        result = publish(client, tenant, scratch, {"type": "probe", "data": 0, "key": f"key-{i}"}).get_json()
        found.setdefault(result["results"][0]["partition"], f"key-{i}")
        if len(found) == partitions:
            return [found[p] for p in range(partitions)]
    raise AssertionError("no key for some partition")


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")


def test_list_from_offset_and_from_time(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=1)
    publish(client, tenant, stream, {"events": events(5)})
    items = list_all(client, tenant, stream, "&partition=0&offset=3")
    assert [e["offset"] for e in items] == [3, 4]
    assert list_all(client, tenant, stream, "&partition=0&offset=5") == []  # the end: nothing yet
    time.sleep(0.02)
    cut = _iso(time.time())
    time.sleep(0.02)
    publish(client, tenant, stream, {"events": events(2, start=5)})
    items = list_all(client, tenant, stream, f"&from_time={cut}")
    assert [e["data"]["i"] for e in items] == [5, 6]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert list_all(client, tenant, stream, f"&from_time={future.replace('+', '%2B')}") == []


def test_list_filters_type_glob_key_and_data_substring(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    batch = [
        {"type": "order.created", "data": {"sku": "RED-1"}, "key": "a"},
        {"type": "order.paid", "data": {"sku": "blue-2"}, "key": "b"},
        {"type": "invoice.sent", "data": {"note": "Red letter day"}, "key": "a"},
        {"type": "order.created", "data": {"sku": "green"}, "key": "c"},
    ]
    publish(client, tenant, stream, {"events": batch})

    def kinds(query: str) -> list[str]:
        return sorted(e["type"] + ":" + (e["key"] or "") for e in list_all(client, tenant, stream, query, limit=2))

    assert kinds("&type=order.*") == ["order.created:a", "order.created:c", "order.paid:b"]
    assert kinds("&type=order.created") == ["order.created:a", "order.created:c"]
    assert kinds("&type=*.sent") == ["invoice.sent:a"]
    assert kinds("&key=a") == ["invoice.sent:a", "order.created:a"]
    assert kinds("&q=red") == ["invoice.sent:a", "order.created:a"]  # case-insensitive, keys and values
    assert kinds("&q=sku&type=order.*&key=b") == ["order.paid:b"]
    assert kinds("&type=nothing.*") == []


def test_filtered_list_scans_past_non_matching_events(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=1)
    publish(client, tenant, stream, {"events": events(1200, type_="noise")})
    publish(client, tenant, stream, {"events": events(3, type_="signal", start=5000)})
    items = list_all(client, tenant, stream, "&type=signal", limit=2)
    assert [e["data"]["i"] for e in items] == [5000, 5001, 5002]


def test_list_bad_parameters(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant)
    publish(client, tenant, stream, {"events": events(3, key="k")})
    base = f"/api/v1/streams/{stream}/events"
    for query, status, code in [
        ("partition=abc", 400, "invalid_parameter"),
        ("partition=1.5", 400, "invalid_parameter"),
        ("partition=3", 422, "invalid_partition"),
        ("partition=-1", 422, "invalid_partition"),
        ("partition=99999999999999999999", 422, "invalid_partition"),
        ("partition=0&offset=-1", 400, "invalid_parameter"),
        ("partition=0&offset=x", 400, "invalid_parameter"),
        ("partition=0&offset=99999999999999999999", 400, "invalid_parameter"),
        ("partition=0&offset=1000", 422, "invalid_offset"),
        ("offset=0", 400, "invalid_parameter"),
        ("from_time=yesterday", 400, "invalid_parameter"),
        ("from_time=2024-01-01T00:00:00", 400, "invalid_parameter"),  # no offset: not RFC 3339
        ("partition=0&offset=0&from_time=2024-01-01T00:00:00Z", 400, "invalid_parameter"),
        ("limit=0", 400, "invalid_parameter"),
        ("limit=100000", 400, "invalid_parameter"),
        ("cursor=garbage!!", 400, "invalid_cursor"),
        ("cursor=eyJvIjp7Ijk5IjowfX0", 400, "invalid_cursor"),  # {"o":{"99":0}}: no partition 99
        ("type=" + "x" * 300, 400, "invalid_parameter"),
    ]:
        error(client.get(f"{base}?{query}", headers=tenant.headers()), status, code)


def test_get_one_event_and_404_outside_the_log(client: FlaskClient, tenant: TenantCtx) -> None:
    stream = make_stream(client, tenant, partitions=2)
    [result] = publish(client, tenant, stream, {"type": "a", "data": [1, 2]}).get_json()["results"]
    p = result["partition"]
    assert client.get(f"/api/v1/streams/{stream}/events/{p}/0", headers=tenant.headers()).get_json()["data"] == [1, 2]
    for path in (f"{p}/1", f"{1 - p}/0", f"{p}/-1", "2/0", "-1/0", "99999/0", f"{p}/99999999999999999999"):
        error(client.get(f"/api/v1/streams/{stream}/events/{path}", headers=tenant.headers()), 404,
              "event_not_found")
    error(client.get(f"/api/v1/streams/{stream}/events/zero/0", headers=tenant.headers()), 400, "invalid_parameter")
