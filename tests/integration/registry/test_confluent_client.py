"""Confluent's own Python client and serializers, unchanged, against the bus's registry over real HTTP."""
from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from app.bus.registry import decode_wire
from tests.integration.registry.conftest import registry_client
from tests.support.apps import TenantCtx

ORDER_V1 = {"type": "record", "name": "Order", "namespace": "shop",
            "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"}]}
ORDER_V2 = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
ORDER_BAD = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "qty", "type": "int"}]}  # no default
PERSON = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Person", "type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name"]}


def _subject(topic: str) -> str:
    return f"{topic}-value"


def avro(schema: dict) -> Schema:
    """An Avro schema object as the client sends it."""
    return Schema(json.dumps(schema), "AVRO")


def test_register_evolve_and_read_back_avro(sr: SchemaRegistryClient) -> None:
    subject = f"orders-{uuid.uuid4().hex[:6]}-value"

    first = sr.register_schema(subject, avro(ORDER_V1))
    again = sr.register_schema(subject, Schema(json.dumps(ORDER_V1, indent=4), "AVRO"))  # same schema, new spacing
    second = sr.register_schema(subject, avro(ORDER_V2))

    assert again == first
    assert second != first
    assert sr.get_versions(subject) == [1, 2]
    latest = sr.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert json.loads(latest.schema.schema_str) == ORDER_V2
    assert json.loads(sr.get_schema(first).schema_str) == ORDER_V1
    assert sr.get_version(subject, 1).schema_id == first
    found = sr.lookup_schema(subject, avro(ORDER_V2))
    assert (found.version, found.schema_id) == (2, second)
    assert subject in sr.get_subjects()
    assert {(v.subject, v.version) for v in sr.get_schema_versions(second)} == {(subject, 2)}


def test_incompatible_registration_is_refused_with_409(sr: SchemaRegistryClient) -> None:
    subject = f"orders-{uuid.uuid4().hex[:6]}-value"
    sr.register_schema(subject, avro(ORDER_V1))

    assert sr.test_compatibility(subject, avro(ORDER_V2)) is True
    assert sr.test_compatibility(subject, avro(ORDER_BAD)) is False
    with pytest.raises(SchemaRegistryError) as err:
        sr.register_schema(subject, avro(ORDER_BAD))

    assert err.value.http_status_code == 409
    assert err.value.error_code == 409
    assert "qty" in err.value.error_message
    # NONE lets anything through: the level is per subject.
    sr.set_compatibility(subject, "NONE")
    assert sr.get_compatibility(subject) == "NONE"
    assert sr.register_schema(subject, avro(ORDER_BAD)) > 0


def test_json_schema_registration_and_global_level(sr: SchemaRegistryClient) -> None:
    subject = f"people-{uuid.uuid4().hex[:6]}-value"
    schema_id = sr.register_schema(subject, Schema(json.dumps(PERSON), "JSON"))

    fetched = sr.get_schema(schema_id)
    assert fetched.schema_type == "JSON"
    assert json.loads(fetched.schema_str) == PERSON
    assert sr.get_compatibility() == "BACKWARD"
    sr.set_compatibility(level="FULL")
    try:
        assert sr.get_compatibility() == "FULL"
    finally:
        sr.set_compatibility(level="BACKWARD")


def test_avro_serializer_round_trip_with_a_publish_key(base_url: str, tenant: TenantCtx) -> None:
    # A producer's key (publish scope) auto-registers, as Confluent serializers do by default.
    producer_client = registry_client(base_url, tenant.keys["publish"])
    consumer_client = registry_client(base_url, tenant.keys["consume"])
    topic = f"orders{uuid.uuid4().hex[:6]}"
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = AvroSerializer(producer_client, json.dumps(ORDER_V2))
    deserializer = AvroDeserializer(consumer_client)
    order = {"id": "o-1", "amount": 12.5, "note": "gift"}

    value = serializer(order, ctx)

    framed = decode_wire(value)
    assert framed is not None
    assert framed[0] == producer_client.get_latest_version(_subject(topic)).schema_id
    assert deserializer(value, ctx) == order
    producer_client.close()
    consumer_client.close()


def test_json_serializer_round_trip(sr: SchemaRegistryClient) -> None:
    topic = f"people{uuid.uuid4().hex[:6]}"
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = JSONSerializer(json.dumps(PERSON), sr)
    deserializer = JSONDeserializer(None, schema_registry_client=sr)
    person = {"name": "Ada", "age": 36}

    value = serializer(person, ctx)

    assert deserializer(value, ctx) == person
    assert sr.get_latest_version(_subject(topic)).schema.schema_type == "JSON"


def test_references_between_subjects(sr: SchemaRegistryClient) -> None:
    tag = uuid.uuid4().hex[:6]
    address = {"type": "record", "name": "Address", "namespace": "shop",
               "fields": [{"name": "city", "type": "string"}]}
    customer = {"type": "record", "name": "Customer", "namespace": "shop",
                "fields": [{"name": "name", "type": "string"}, {"name": "address", "type": "shop.Address"}]}
    sr.register_schema(f"address-{tag}", avro(address))
    ref = SchemaReference("shop.Address", f"address-{tag}", 1)

    customer_id = sr.register_schema(f"customer-{tag}", Schema(json.dumps(customer), "AVRO", [ref]))

    fetched = sr.get_schema(customer_id)
    assert [(r.name, r.subject, r.version) for r in fetched.references] == [("shop.Address", f"address-{tag}", 1)]
    with pytest.raises(SchemaRegistryError) as err:
        sr.delete_version(f"address-{tag}", 1)
    assert err.value.error_code == 42206


def test_soft_and_permanent_deletes(sr: SchemaRegistryClient) -> None:
    subject = f"gone-{uuid.uuid4().hex[:6]}"
    sr.register_schema(subject, avro(ORDER_V1))
    sr.register_schema(subject, avro(ORDER_V2))

    assert sr.delete_version(subject, 2) == 2
    assert sr.get_versions(subject) == [1]
    assert sr.delete_subject(subject) == [1]
    with pytest.raises(SchemaRegistryError) as err:
        sr.get_versions(subject)
    assert err.value.error_code == 40401
    assert sr.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in sr.get_subjects()


def test_read_only_mode_refuses_registration(sr: SchemaRegistryClient) -> None:
    subject = f"frozen-{uuid.uuid4().hex[:6]}"
    sr.register_schema(subject, avro(ORDER_V1))
    assert sr.update_mode(subject, "READONLY") == "READONLY"
    assert sr.get_mode(subject) == "READONLY"

    with pytest.raises(SchemaRegistryError) as err:
        sr.register_schema(subject, avro(ORDER_V2))

    assert (err.value.http_status_code, err.value.error_code) == (422, 42205)
    assert sr.delete_mode(subject) == "READONLY"
    assert sr.register_schema(subject, avro(ORDER_V2)) > 0


def test_unknown_ids_and_subjects_are_confluent_errors(sr: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as err:
        sr.get_schema(2_000_000_000)
    assert (err.value.http_status_code, err.value.error_code) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as err:
        sr.get_latest_version(f"nope-{uuid.uuid4().hex}")
    assert err.value.error_code == 40401
    with pytest.raises(SchemaRegistryError) as err:
        sr.register_schema(f"bad-{uuid.uuid4().hex[:6]}", Schema('{"type": "record", "name": "X"}', "AVRO"))
    assert err.value.error_code == 42201
