"""Publishing into a stream bound to a schema subject validates every event's data (422 with index and path)."""
from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from flask.testing import FlaskClient

from app.bus.registry import avro_encode, encode_wire, parse_schema
from tests.support.apps import TenantCtx

V1 = "application/vnd.schemaregistry.v1+json"
ORDER = {"type": "record", "name": "Order",
         "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"},
                    {"name": "note", "type": ["null", "string"], "default": None}]}
CART = {"type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["sku", "price"],
            "properties": {"sku": {"type": "string"}, "price": {"type": "number", "minimum": 0}}}}}}


def _register(client: FlaskClient, tenant: TenantCtx, subject: str, schema: dict, schema_type: str = "AVRO") -> int:
    resp = client.post(f"/registry/subjects/{subject}/versions", headers=tenant.headers("all"), content_type=V1,
                       data=json.dumps({"schema": json.dumps(schema), "schemaType": schema_type}))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json(force=True)["id"]


def _stream(client: FlaskClient, tenant: TenantCtx, subject: str | None) -> str:
    name = f"s-{uuid.uuid4().hex[:8]}"
    resp = client.post("/api/v1/streams", json={"name": name, "partitions": 1, "schema_subject": subject},
                       headers=tenant.headers())
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return name


def _publish(client: FlaskClient, tenant: TenantCtx, stream: str, events: list[dict[str, Any]]) -> Any:
    return client.post(f"/api/v1/streams/{stream}/events", json={"events": events}, headers=tenant.headers("publish"))


def _violation(resp: Any, index: int, path: str) -> dict[str, Any]:
    assert resp.status_code == 422, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == "schema_violation"
    assert error["details"]["index"] == index
    assert error["details"]["path"] == path
    return error


def test_avro_subject_accepts_valid_and_refuses_invalid(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = f"orders-{uuid.uuid4().hex[:6]}-value"
    schema_id = _register(client, tenant, subject, ORDER)
    stream = _stream(client, tenant, subject)
    good = [{"type": "order.created", "data": {"id": f"o{i}", "amount": 9.5, "note": None}} for i in range(3)]

    assert _publish(client, tenant, stream, good).status_code == 201
    bad = [*good, {"type": "order.created", "data": {"id": "o9", "amount": "lots"}}]
    error = _violation(_publish(client, tenant, stream, bad), 3, "$.amount")
    assert error["details"]["subject"] == subject
    assert error["details"]["id"] == schema_id
    assert "event 3" in error["message"]
    # All or nothing: the refused batch appended nothing.
    listed = client.get(f"/api/v1/streams/{stream}/events", headers=tenant.headers("consume")).get_json()
    assert len(listed["items"]) == 3


def test_json_schema_subject_names_the_nested_path(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = f"carts-{uuid.uuid4().hex[:6]}"
    _register(client, tenant, subject, CART, "JSON")
    stream = _stream(client, tenant, subject)
    cart = {"items": [{"sku": "a", "price": 1}, {"sku": "b", "price": -2}]}

    _violation(_publish(client, tenant, stream, [{"type": "cart", "data": {"items": []}},
                                                 {"type": "cart", "data": cart}]), 1, "$.items[1].price")
    assert _publish(client, tenant, stream, [{"type": "cart", "data": {"items": [{"sku": "a", "price": 0}]}}]) \
        .status_code == 201


def test_dataschema_names_the_version(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = f"evolving-{uuid.uuid4().hex[:6]}"
    client.put(f"/registry/config/{subject}", headers=tenant.headers("all"), content_type=V1,
               data=json.dumps({"compatibility": "NONE"}))
    v1 = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}
    v2 = {"type": "object", "required": ["b"], "properties": {"b": {"type": "integer"}}}
    id1 = _register(client, tenant, subject, v1, "JSON")
    stream = _stream(client, tenant, subject)
    old_event = {"type": "t", "data": {"a": "x"}}
    first = _publish(client, tenant, stream, [old_event])
    assert first.status_code == 201, first.get_data(as_text=True)
    _register(client, tenant, subject, v2, "JSON")  # the new latest applies at once in this process

    _violation(_publish(client, tenant, stream, [old_event]), 0, "$")
    for dataschema in (f"/registry/subjects/{subject}/versions/1", f"http://bus.example/registry/schemas/ids/{id1}"):
        assert _publish(client, tenant, stream, [{**old_event, "dataschema": dataschema}]).status_code == 201
    # An unrelated dataschema means the latest version.
    assert _publish(client, tenant, stream, [{"type": "t", "data": {"b": 1},
                                              "dataschema": "https://schemas.example/b.json"}]).status_code == 201
    for wrong in (f"/registry/subjects/{subject}/versions/9", "/registry/subjects/other/versions/1",
                  "/registry/schemas/ids/999999999", f"/registry/subjects/{subject}/versions/zero"):
        resp = _publish(client, tenant, stream, [{**old_event, "dataschema": wrong}])
        assert resp.status_code == 422, (wrong, resp.get_data(as_text=True))
        assert resp.get_json()["error"]["details"]["index"] == 0


def test_wire_format_data_is_validated_and_read_back_as_json(client: FlaskClient, tenant: TenantCtx) -> None:
    subject = f"wire-{uuid.uuid4().hex[:6]}"
    schema_id = _register(client, tenant, subject, ORDER)
    stream = _stream(client, tenant, subject)
    order = {"id": "w1", "amount": 3.25, "note": "hi"}
    framed = encode_wire(schema_id, avro_encode(parse_schema("AVRO", json.dumps(ORDER)), order))
    event = {"type": "order.created", "datacontenttype": "application/octet-stream",
             "data_base64": base64.b64encode(framed).decode()}

    assert _publish(client, tenant, stream, [event]).status_code == 201
    got = client.get(f"/api/v1/streams/{stream}/events/0/0", headers=tenant.headers("consume")).get_json()
    assert got["data"] == order
    assert got["datacontenttype"] == "application/json"
    assert got["dataschema"] == f"/registry/schemas/ids/{schema_id}"
    garbage = {**event, "data_base64": base64.b64encode(encode_wire(schema_id, b"\xff")).decode()}
    _violation(_publish(client, tenant, stream, [event, garbage]), 1, "$")
    unknown = {**event, "data_base64": base64.b64encode(encode_wire(999_999_999, b"")).decode()}
    _violation(_publish(client, tenant, stream, [unknown]), 0, "$")
    text = {"type": "t", "datacontenttype": "text/plain", "data": "hello"}
    _violation(_publish(client, tenant, stream, [text]), 0, "$")


def test_subject_without_versions_refuses_and_unbound_streams_accept_anything(client: FlaskClient,
                                                                               tenant: TenantCtx) -> None:
    empty = _stream(client, tenant, f"nothing-{uuid.uuid4().hex[:6]}")
    resp = _publish(client, tenant, empty, [{"type": "t", "data": {}}])
    assert resp.status_code == 422
    assert "no schema registered" in resp.get_json()["error"]["message"]
    free = _stream(client, tenant, None)
    assert _publish(client, tenant, free, [{"type": "t", "data": {"any": ["thing"]}}]).status_code == 201
