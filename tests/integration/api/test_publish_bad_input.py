"""Bad input to POST events: always a 4xx with API.md's error body, never a 500, and nothing appended."""
from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.integration.api.test_events import error, events, highs, make_stream, publish
from tests.support.apps import TenantCtx


@pytest.fixture
def stream(client: FlaskClient, tenant: TenantCtx) -> str:
    """A fresh 3-partition stream."""
    return make_stream(client, tenant)


def post_raw(client: FlaskClient, tenant: TenantCtx, stream: str, data: bytes,
             content_type: str = "application/json") -> Any:
    return client.post(f"/api/v1/streams/{stream}/events", data=data, content_type=content_type,
                       headers=tenant.headers("publish"))


def test_one_bad_event_rejects_the_whole_batch(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    publish(client, tenant, stream, {"events": events(4)})
    before = highs(client, tenant, stream)
    batch = events(5)
    batch[3] = {"data": {"no": "type"}}
    err = error(publish(client, tenant, stream, {"events": batch}), 422, "invalid_event")
    assert err["details"] == {"index": 3, "field": "type"}
    assert highs(client, tenant, stream) == before


@pytest.mark.parametrize(("event", "field"), [
    ({"data": 1}, "type"),
    ({"type": "a"}, "data"),
    ({"type": "", "data": 1}, "type"),
    ({"type": "has space", "data": 1}, "type"),
    ({"type": 5, "data": 1}, "type"),
    ({"type": "a", "data": 1, "time": "yesterday"}, "time"),
    ({"type": "a", "data": 1, "time": "2024-01-01T00:00:00"}, "time"),
    ({"type": "a", "data": 1, "key": 7}, "key"),
    ({"type": "a", "data": 1, "id": ""}, "id"),
    ({"type": "a", "data": 1, "headers": {"x": 1}}, "headers"),
    ({"type": "a", "data": 1, "specversion": "0.3"}, "specversion"),
    ({"type": "a", "data": {"x": 1}, "datacontenttype": "text/plain"}, "data"),
    ({"type": "a", "data_base64": "not base64!"}, "data_base64"),
    ({"type": "a", "data": 1, "key": "a\u0000b"}, "key"),
    ({"type": "a", "data": 1, "subject": "nul\u0000"}, "subject"),
    ({"type": "a", "data": 1, "headers": {"h": "\u0000"}}, "headers"),
    ("just a string", None),
    (42, None),
    (None, None),
])
def test_invalid_events_are_422_with_index_and_field(client: FlaskClient, tenant: TenantCtx, stream: str,
                                                     event: Any, field: str | None) -> None:
    err = error(publish(client, tenant, stream, {"events": events(2) + [event]}), 422, "invalid_event")
    assert err["details"] == {"index": 2, "field": field}
    if isinstance(event, dict):  # and alone, as a single-event body
        err = error(publish(client, tenant, stream, event), 422, "invalid_event")
        assert err["details"] == {"index": 0, "field": field}
    assert highs(client, tenant, stream) == [0, 0, 0]


def test_batch_shape(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    error(publish(client, tenant, stream, {"events": []}), 422, "no_events")
    error(publish(client, tenant, stream, []), 422, "no_events")
    error(publish(client, tenant, stream, {"events": {"type": "a", "data": 1}}), 422, "invalid_field")
    error(publish(client, tenant, stream, {"events": events(1), "extra": 1}), 422, "unknown_field")
    assert highs(client, tenant, stream) == [0, 0, 0]


def test_too_many_events_is_413(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    err = error(publish(client, tenant, stream, {"events": [{"type": "a", "data": 0}] * 10_001}), 413,
                "too_many_events")
    assert err["details"] == {"max": 10_000, "count": 10_001}
    assert highs(client, tenant, stream) == [0, 0, 0]
    resp = publish(client, tenant, stream, {"events": [{"type": "a", "data": 0}] * 10_000})  # the limit itself
    assert resp.status_code == 201 and len(resp.get_json()["results"]) == 10_000
    assert sum(highs(client, tenant, stream)) == 10_000


def test_body_over_10_mib_is_413(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    body = orjson.dumps({"type": "a", "data": "x" * (10 * 1024 * 1024)})
    error(post_raw(client, tenant, stream, body), 413)
    assert highs(client, tenant, stream) == [0, 0, 0]


def test_content_type_and_malformed_bodies(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    good = b'{"type":"a","data":1}'
    error(post_raw(client, tenant, stream, good, "text/plain"), 415, "unsupported_media_type")
    error(post_raw(client, tenant, stream, good, "application/x-www-form-urlencoded"), 415)
    error(post_raw(client, tenant, stream, b'{"type":"a","data":', "application/json"), 400, "malformed_json")
    error(post_raw(client, tenant, stream, b"", "application/json"), 400)
    error(post_raw(client, tenant, stream, b'{"type":"a","data":"\xff\xfe"}'), 400, "malformed_json")  # not UTF-8
    error(post_raw(client, tenant, stream, b'{"type":"a","data":NaN}'), 400, "malformed_json")
    error(post_raw(client, tenant, stream, b'{"type":"a","data":"\\ud800"}'), 400, "malformed_json")
    assert post_raw(client, tenant, stream, good, "application/cloudevents+json").status_code == 201
    assert sum(highs(client, tenant, stream)) == 1


@pytest.mark.parametrize(("depth", "status"), [(10_000, 400), (1000, 422), (300, 422), (65, 422), (64, 201)])
def test_deeply_nested_data(client: FlaskClient, tenant: TenantCtx, stream: str, depth: int, status: int) -> None:
    body = b'{"type":"a","data":' + b"[" * depth + b"]" * depth + b"}"
    resp = post_raw(client, tenant, stream, body)
    assert resp.status_code == status, resp.get_data(as_text=True)
    if status == 422:
        assert resp.get_json()["error"]["details"] == {"index": 0, "field": "data"}
    elif status == 400:
        assert resp.get_json()["error"]["code"] == "malformed_json"  # beyond the JSON parser's depth limit
    else:
        [result] = resp.get_json()["results"]
        shown = client.get(f"/api/v1/streams/{stream}/events/{result['partition']}/{result['offset']}",
                           headers=tenant.headers())
        assert shown.status_code == 200  # what is accepted can be read back


def test_wide_but_shallow_data_is_fine(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    data = {"rows": [[{"v": "[{[{"}] for _ in range(200)], "text": "{" * 500}
    assert publish(client, tenant, stream, {"type": "a", "data": data}).status_code == 201


def test_huge_integers_and_odd_values(client: FlaskClient, tenant: TenantCtx, stream: str) -> None:
    for raw in (b'{"type":"a","data":123456789012345678901234567890}', b'{"type":"a","data":-1e308}',
                b'{"type":"a","data":18446744073709551615}', b'{"type":"a","data":"\\u0000"}'):
        resp = post_raw(client, tenant, stream, raw)
        assert resp.status_code in (201, 400, 422), resp.get_data(as_text=True)


# -- property: whatever the body, 201 or 4xx, and nothing appended on 4xx ------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_text = st.text(min_size=1, max_size=12)
# Mostly valid attribute values, sometimes anything at all, so that both 201 and 422 are exercised.
_attr = st.one_of(_text, _text, _text, _json)
_eventish = st.fixed_dictionaries(
    {"type": st.one_of(*[st.sampled_from(["order.created", "a", "x.y/z"])] * 4,
                       st.from_regex(r"[a-z.]{1,9}", fullmatch=True), _attr),
     "data": _json},
    optional={
        "id": _attr, "source": _attr, "subject": _attr, "key": _attr, "dataschema": _attr,
        "time": st.one_of(st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()), _attr),
        "headers": st.one_of(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True),
                                             st.text(max_size=6), max_size=3), _json),
        "datacontenttype": st.sampled_from(["application/json", "text/plain", "application/cloudevents+json"]),
        "data_base64": st.one_of(st.just("aGVsbG8="), _attr),
        "specversion": st.sampled_from(["1.0", "1.0", "0.3"]),
        "events": _json,
    },
)
_body = st.one_of(_json, _eventish, _eventish, _eventish, st.lists(_eventish, max_size=3),
                  st.fixed_dictionaries({"events": st.one_of(st.lists(_eventish, max_size=4), _json)}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_body)
def test_arbitrary_json_never_5xx_and_4xx_appends_nothing(client: FlaskClient, tenant: TenantCtx, stream: str,
                                                          body: Any) -> None:
    before = sum(highs(client, tenant, stream))
    resp = client.post(f"/api/v1/streams/{stream}/events", data=json.dumps(body).encode(),
                       content_type="application/json", headers=tenant.headers("publish"))
    assert resp.status_code == 201 or 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))
    event(f"status {resp.status_code}")
    after = sum(highs(client, tenant, stream))
    if resp.status_code == 201:
        assert after == before + len(resp.get_json()["results"])
    else:
        assert "error" in resp.get_json()
        assert after == before
