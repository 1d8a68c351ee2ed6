"""Publish validators: a 20-field JSON Schema and a 20-field Avro record, valid and invalid data, paths, cache."""
from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from app.bus.registry import ValidationFailed, compile_validator, validator_for
from tests.unit.registry.helpers import avro, field, jschema, record

ADDRESS = {"type": "object", "properties": {"street": {"type": "string"}, "zip": {"type": "string", "maxLength": 5}},
           "required": ["zip"]}
ORDER_JSON = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "customer", "items", "status", "total"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "customer": {"type": "object", "properties": {"name": {"type": "string"},
                                                      "email": {"type": "string", "format": "email"}}},
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["sku", "qty", "price"],
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                           "qty": {"type": "integer", "minimum": 1},
                           "price": {"type": "number", "exclusiveMinimum": 0}}}},
        "status": {"enum": ["NEW", "PAID", "SHIPPED"]},
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": "EUR"},
        "created_at": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "notes": {"type": ["string", "null"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "gift": {"type": "boolean"},
        "coupon": {"type": "string", "maxLength": 10},
        "discount": {"type": "number", "multipleOf": 0.5},
        "shipping": {"type": "object", "properties": {"method": {"enum": ["post", "courier"]},
                                                      "address": {"$ref": "#/definitions/address"}}},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "odd key": {"type": "string"},
        "version": {"const": 1},
        "paid_at": {"type": ["string", "null"], "format": "date-time"},
        "channel": {"type": "string", "enum": ["web", "app"]},
        "weight": {"type": "number"},
    },
    "definitions": {"address": ADDRESS},
}
VALID_JSON = {
    "id": "o-1", "customer": {"name": "Ada", "email": "ada@example.com"},
    "items": [{"sku": "ABC-1", "qty": 1, "price": 2.5}, {"sku": "ABC-2", "qty": 2, "price": 1},
              {"sku": "XYZ-9", "qty": 3, "price": 10}],
    "status": "PAID", "total": 34.5, "currency": "EUR", "created_at": "2024-05-01T10:00:00Z",
    "tags": ["a", "b"], "notes": None, "priority": 3, "gift": False, "coupon": "SPRING", "discount": 1.5,
    "shipping": {"method": "post", "address": {"zip": "12345"}}, "metadata": {"src": "test"},
    "odd key": "x", "version": 1, "paid_at": None, "channel": "web", "weight": 1.25,
}


def _with(datum: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(datum)
    node = out
    for part in path[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()

JSON_INVALID = [
    (["items", 2, "price"], "x", "$.items[2].price"),
    (["items", 1, "sku"], "abc", "$.items[1].sku"),
    (["items", 0, "qty"], 0, "$.items[0].qty"),
    (["id"], _DELETE, "$"),
    (["status"], "LOST", "$.status"),
    (["customer", "email"], "not-an-email", "$.customer.email"),
    (["created_at"], "yesterday", "$.created_at"),
    (["tags"], ["a", "a"], "$.tags"),
    (["priority"], 9, "$.priority"),
    (["currency"], "usd", "$.currency"),
    (["discount"], 0.3, "$.discount"),
    (["shipping", "address", "zip"], "123456", "$.shipping.address.zip"),
    (["metadata", "src"], 1, "$.metadata.src"),
    (["odd key"], 3, "$['odd key']"),
    (["version"], 2, "$.version"),
    (["unexpected"], 1, "$"),
    (["items"], [], "$.items"),
]


def test_valid_json_passes_and_is_not_modified() -> None:
    validate = compile_validator(jschema(ORDER_JSON))
    datum = _with(VALID_JSON, ["currency"], _DELETE)
    before = copy.deepcopy(datum)
    validate(datum)
    assert datum == before  # no defaults written into event data
    validate(VALID_JSON)


@pytest.mark.parametrize(("where", "value", "path"), JSON_INVALID, ids=[p for _, _, p in JSON_INVALID])
def test_invalid_json_reports_path(where: list[Any], value: Any, path: str) -> None:
    validate = compile_validator(jschema(ORDER_JSON))
    with pytest.raises(ValidationFailed) as caught:
        validate(_with(VALID_JSON, where, value))
    assert caught.value.path == path
    assert caught.value.message and not caught.value.message.startswith("data")


def test_json_2020_12_uses_jsonschema_fallback() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array",
              "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}
    validate = compile_validator(jschema(schema))
    validate(["a", 1])
    with pytest.raises(ValidationFailed) as caught:
        validate(["a", "b"])
    assert caught.value.path == "$[1]"


def test_json_validator_with_external_reference() -> None:
    parsed = jschema({"type": "object", "properties": {"ship_to": {"$ref": "address.json"}}},
                     {"address.json": '{"type": "object", "properties": {"zip": {"type": "string"}}}'})
    validate = validator_for(parsed)
    validate({"ship_to": {"zip": "1"}})
    with pytest.raises(ValidationFailed) as caught:
        validate({"ship_to": {"zip": 1}})
    assert caught.value.path == "$.ship_to.zip"


def test_digit_keys_are_not_mistaken_for_indexes() -> None:
    validate = compile_validator(jschema({"type": "object", "additionalProperties": {"type": "integer"}}))
    with pytest.raises(ValidationFailed) as caught:
        validate({"0": "x"})
    assert caught.value.path == "$['0']"


STATUS = {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}
ORDER_AVRO = record(
    field("id", "string"),
    field("customer", record(field("name", "string"), field("email", ["null", "string"], default=None),
                             name="Customer")),
    field("items", {"type": "array", "items": record(field("sku", "string"), field("qty", "int"),
                                                     field("price", "double"), name="Item")}),
    field("status", STATUS),
    field("total", "double"),
    field("currency", {"type": "fixed", "name": "Currency", "size": 3}),
    field("created_at", {"type": "long", "logicalType": "timestamp-millis"}),
    field("tags", {"type": "array", "items": "string"}, default=[]),
    field("notes", ["null", "string"], default=None),
    field("priority", "int"),
    field("gift", "boolean", default=False),
    field("coupon", ["null", "string"], default=None),
    field("discount", "float", default=0),
    field("shipping", record(field("method", {"type": "enum", "name": "Method", "symbols": ["post", "courier"]}),
                             field("address", {"type": "map", "values": "string"}), name="Shipping")),
    field("metadata", {"type": "map", "values": "string"}, default={}),
    field("raw", "bytes", default=""),
    field("version", "int", default=1),
    field("paid_at", ["null", {"type": "long", "logicalType": "timestamp-millis"}], default=None),
    field("channel", {"type": "enum", "name": "Channel", "symbols": ["web", "app", "other"], "default": "other"}),
    field("weight", ["null", "double"], default=None),
)
VALID_AVRO = {
    "id": "o-1", "customer": {"name": "Ada", "email": "ada@example.com"},
    "items": [{"sku": "A", "qty": 1, "price": 2.5}, {"sku": "B", "qty": 2, "price": 1.0},
              {"sku": "C", "qty": 3, "price": 10.0}],
    "status": "PAID", "total": 34.5, "currency": "EUR", "created_at": 1714557600000, "tags": ["a"],
    "notes": None, "priority": 3, "gift": True, "coupon": "SPRING", "discount": 0.5,
    "shipping": {"method": "post", "address": {"zip": "12345"}}, "metadata": {"src": "test"},
    "raw": "\u0000\u00ff", "version": 1, "paid_at": 1714557600000, "channel": "web", "weight": 1.25,
}

AVRO_INVALID = [
    (["items", 2, "price"], "x", "$.items[2].price"),
    (["items", 0, "qty"], 1.5, "$.items[0].qty"),
    (["id"], _DELETE, "$.id"),
    (["status"], "LOST", "$.status"),
    (["priority"], 2**40, "$.priority"),
    (["currency"], "EURO", "$.currency"),
    (["metadata", "src"], 1, "$.metadata.src"),
    (["customer", "email"], 5, "$.customer.email"),
    (["customer"], {"email": None}, "$.customer.name"),
    (["raw"], "\u0100", "$.raw"),
    (["shipping", "method"], "drone", "$.shipping.method"),
    (["notes"], {"int": 1}, "$.notes"),
    (["gift"], "yes", "$.gift"),
    (["tags", 0], None, "$.tags[0]"),
]


def test_valid_avro_passes() -> None:
    validate = compile_validator(avro(ORDER_AVRO))
    validate(VALID_AVRO)
    validate(_with(VALID_AVRO, ["notes"], {"string": "wrapped union value"}))
    validate(_with(VALID_AVRO, ["gift"], _DELETE))  # default applies


@pytest.mark.parametrize(("where", "value", "path"), AVRO_INVALID, ids=[p for _, _, p in AVRO_INVALID])
def test_invalid_avro_reports_path(where: list[Any], value: Any, path: str) -> None:
    validate = compile_validator(avro(ORDER_AVRO))
    with pytest.raises(ValidationFailed) as caught:
        validate(_with(VALID_AVRO, where, value))
    assert caught.value.path == path
    assert caught.value.message


def test_validator_for_caches_by_fingerprint_across_threads() -> None:
    parsed = avro(ORDER_AVRO)
    same = avro(ORDER_AVRO)
    first = validator_for(parsed)
    assert validator_for(same) is first
    results: list[Any] = []

    def worker() -> None:
        validator = validator_for(jschema(ORDER_JSON))
        validator(VALID_JSON)
        results.append(validator)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len({id(r) for r in results}) == 1
