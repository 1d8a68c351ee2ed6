"""Webhook bodies carry wire-format data (Confluent serializers: magic byte 0 + schema id) decoded to JSON."""
from __future__ import annotations

import base64
import json

from app.bus.registry import avro_encode, encode_wire, parse_schema
from tests.integration.webhooks.conftest import Bus, dispatcher
from tests.support.receiver import Receiver

ORDER_SCHEMA = json.dumps({"type": "record", "name": "Order", "namespace": "shop",
                           "fields": [{"name": "id", "type": "int"}, {"name": "total", "type": "double"}]})


def test_avro_wire_format_is_decoded_in_webhook_bodies(bus: Bus, receiver: Receiver) -> None:
    resp = bus.client.post("/registry/subjects/orders-value/versions", json={"schema": ORDER_SCHEMA},
                           headers=bus.tenant.headers("all"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    schema_id = resp.get_json()["id"]
    framed = encode_wire(schema_id, avro_encode(parse_schema("AVRO", ORDER_SCHEMA), {"id": 7, "total": 12.5}))
    stream = bus.stream(partitions=1)
    bus.subscribe(stream, receiver.url("/wire"))
    bus.publish(stream, [{"type": "order.created", "datacontenttype": "application/octet-stream",
                          "data_base64": base64.b64encode(framed).decode()}])

    with dispatcher(bus.app):
        got = receiver.wait_for(1, "/wire")

    body = json.loads(got[0].body)
    assert body["data"] == {"id": 7, "total": 12.5}  # not the framed bytes
    assert body["datacontenttype"] == "application/json"
