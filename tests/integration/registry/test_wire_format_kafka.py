"""Records Confluent's serializers write straight into a Kafka-backed stream's topic read back as JSON."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from flask import Flask

from tests.integration.registry.conftest import registry_client
from tests.support.apps import ADMIN_PASSWORD, build_app, login, new_tenant
from tests.support.live_server import live_server

PAYMENT = {"type": "record", "name": "Payment", "namespace": "bank",
           "fields": [{"name": "id", "type": "string"}, {"name": "cents", "type": "long"},
                      {"name": "tags", "type": {"type": "array", "items": "string"}}]}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.fixture(scope="module")
def kafka_app(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app whose event log is the Kafka-protocol broker (metadata on SQLite)."""
    from app.extensions import db
    from app.services.event_log import close_app_log

    path: Path = tmp_path_factory.mktemp("wire") / "bus.db"
    application = build_app(f"sqlite:///{path}", event_log_url=f"kafka://{kafka_bootstrap}")
    yield application
    close_app_log(application)
    with application.app_context():
        db.engine.dispose()


def test_serializer_records_are_decoded_for_reads(kafka_app: Flask, kafka_bootstrap: str) -> None:
    client = kafka_app.test_client()
    tenant = new_tenant(client, login(client, "admin", ADMIN_PASSWORD))
    streams = {kind: f"{kind}-{uuid.uuid4().hex[:6]}" for kind in ("avro", "json")}
    for name in streams.values():
        resp = client.post("/api/v1/streams", json={"name": name, "partitions": 1}, headers=tenant.headers())
        assert resp.status_code == 201, resp.get_data(as_text=True)
    payment = {"id": "p-1", "cents": 1250, "tags": ["card", "eu"]}
    person = {"name": "Grace"}

    with live_server(kafka_app) as base_url:
        sr = registry_client(base_url, tenant.keys["publish"])
        topics = {kind: f"{tenant.slug}.{name}" for kind, name in streams.items()}
        avro_value = AvroSerializer(sr, json.dumps(PAYMENT))(
            payment, SerializationContext(topics["avro"], MessageField.VALUE))
        json_value = JSONSerializer(json.dumps(PERSON), sr)(
            person, SerializationContext(topics["json"], MessageField.VALUE))
        avro_id = sr.get_latest_version(f"{topics['avro']}-value").schema_id
        sr.close()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "linger.ms": 0})
    producer.produce(topics["avro"], value=avro_value, key=b"p-1")
    producer.produce(topics["json"], value=json_value)
    assert producer.flush(15) == 0

    got = client.get(f"/api/v1/streams/{streams['avro']}/events", headers=tenant.headers("consume")).get_json()
    assert len(got["items"]) == 1
    event = got["items"][0]
    assert event["data"] == payment
    assert event["datacontenttype"] == "application/json"
    assert event["dataschema"] == f"/registry/schemas/ids/{avro_id}"
    one = client.get(f"/api/v1/streams/{streams['json']}/events/0/0", headers=tenant.headers("consume")).get_json()
    assert one["data"] == person
    # Another tenant cannot read the stream at all (decoding per tenant is checked below).
    other = new_tenant(client, login(client, "admin", ADMIN_PASSWORD))
    assert client.get(f"/api/v1/streams/{streams['avro']}/events", headers=other.headers("consume")).status_code == 404


def test_decode_event_data_for_webhook_bodies(kafka_app: Flask) -> None:
    from app.bus.envelope import Event
    from app.bus.registry import encode_wire
    from app.services.wire_format import decode_event_data

    client = kafka_app.test_client()
    tenant = new_tenant(client, login(client, "admin", ADMIN_PASSWORD))
    other = new_tenant(client, login(client, "admin", ADMIN_PASSWORD))
    resp = client.post(f"/registry/subjects/p-{uuid.uuid4().hex[:6]}/versions", headers=tenant.headers("all"),
                       json={"schema": json.dumps(PERSON), "schemaType": "JSON"})
    schema_id = resp.get_json(force=True)["id"]
    raw = Event(type="kafka.record", data=encode_wire(schema_id, b'{"name":"Lin"}'),
                datacontenttype="application/octet-stream")
    with kafka_app.app_context():
        from sqlalchemy import select

        from app.extensions import db
        from app.models import Tenant

        ids = dict(db.session.execute(select(Tenant.slug, Tenant.id).where(
            Tenant.slug.in_([tenant.slug, other.slug]))).all())
        decoded = decode_event_data(ids[tenant.slug], raw)
        foreign = decode_event_data(ids[other.slug], raw)
        plain = Event(type="t", data=b'{"x":1}')
        assert decode_event_data(ids[tenant.slug], plain) is plain

    assert json.loads(decoded.data) == {"name": "Lin"}
    assert decoded.datacontenttype == "application/json"
    assert foreign is raw
