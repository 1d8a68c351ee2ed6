"""Parsing: canonical form, fingerprint de-duplication, invalid schemas (42201) and references."""
from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.bus.registry import (
    SCHEMA_TYPES,
    SchemaError,
    UnresolvedReference,
    ValidationFailed,
    compile_validator,
    parse_schema,
)
from app.bus.registry.types import fingerprint_of
from tests.unit.registry.helpers import avro, field, jschema, proto, record

ORDER = record(
    field("id", "string", doc="order id"),
    field("total", {"type": "double"}, default=0),
    field("status", {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}),
    field("lines", {"type": "array", "items": record(field("sku", "string"), name="Line")}),
    field("again", "Line", default={"sku": "x"}),
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with object keys in a random order."""
    if isinstance(value, dict):
        items = [(k, _shuffled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def test_avro_dedup_ignores_whitespace_key_order_and_namespace_spelling() -> None:
    base = avro(ORDER)
    text = json.dumps(_shuffled(ORDER, random.Random(7)), indent=4)
    assert parse_schema("AVRO", text).fingerprint == base.fingerprint
    spelled = {**ORDER, "name": "shop.Order"}
    del spelled["namespace"]
    assert avro(spelled).fingerprint == base.fingerprint
    assert parse_schema("AVRO", base.canonical).canonical == base.canonical


def test_avro_canonical_form() -> None:
    parsed = avro(ORDER)
    assert parsed.canonical.startswith('{"fields":[{"doc":"order id","name":"id","type":"string"}')
    assert '"name":"shop.Line"' in parsed.canonical and '"type":"shop.Line"' in parsed.canonical
    assert '{"default":0,"name":"total","type":"double"}' in parsed.canonical
    assert " " not in parsed.canonical.replace("order id", "")


def test_avro_different_defaults_or_docs_are_different_schemas() -> None:
    base = avro(ORDER)
    changed = json.loads(json.dumps(ORDER))
    changed["fields"][1]["default"] = 1
    assert avro(changed).fingerprint != base.fingerprint


def test_json_dedup_ignores_whitespace_and_key_order() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "b": {"type": "integer"}},
              "required": ["a"]}
    text = json.dumps(_shuffled(schema, random.Random(3)), indent=2)
    assert parse_schema("JSON", text).fingerprint == jschema(schema).fingerprint
    assert jschema(schema).canonical == json.dumps(schema, sort_keys=True, separators=(",", ":"))


def test_protobuf_dedup_ignores_whitespace_and_comments() -> None:
    compact = 'syntax = "proto3"; package shop; message Order { string id = 1; int64 cents = 2; }'
    spaced = """
    // Orders placed in the shop.
    syntax = "proto3";
    package shop;

    /* the order */
    message Order {
        string id    = 1;   // id
        int64  cents = 2;
    }
    """
    assert proto(compact).fingerprint == proto(spaced).fingerprint
    assert "//" not in proto(spaced).canonical


def test_fingerprint_covers_type_and_references() -> None:
    assert SCHEMA_TYPES == ("AVRO", "JSON", "PROTOBUF")
    assert fingerprint_of("AVRO", "{}", None) != fingerprint_of("JSON", "{}", None)
    assert fingerprint_of("JSON", "{}", {"a": "1"}) != fingerprint_of("JSON", "{}", {"a": "2"})
    assert fingerprint_of("JSON", "{}", {"a": "1", "b": "2"}) == fingerprint_of("JSON", "{}", {"b": "2", "a": "1"})


def test_default_schema_type_is_avro() -> None:
    assert parse_schema(None, '"string"').schema_type == "AVRO"
    assert parse_schema("json", "{}").schema_type == "JSON"


INVALID = [
    ("AVRO", "{not json", "not valid JSON"),
    ("AVRO", '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}',
     "duplicate field 'a'"),
    ("AVRO", '{"type": "record", "name": "1R", "fields": []}', "invalid Avro name"),
    ("AVRO", '{"type": "enum", "name": "E", "symbols": ["A", "A"]}', "duplicate symbols"),
    ("AVRO", '{"type": "fixed", "name": "F", "size": -1}', "'size' must be a non-negative integer"),
    ("AVRO", '["int", "int"]', "duplicate branch 'int'"),
    ("AVRO", '["null", ["int"]]', "may not immediately contain unions"),
    ("AVRO", '{"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "int"], "default": 1}]}',
     "first branch"),
    ("AVRO", '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}',
     "invalid default for field 'a'"),
    ("AVRO", '{"type": "array"}', "missing 'items'"),
    ("AVRO", '{"type": "wat"}', "unknown Avro type 'wat'"),
    ("JSON", "[1, 2]", "expected an object or a boolean"),
    ("JSON", '{"type": "strin"}', "at $.type"),
    ("JSON", '{"properties": {"a": {"pattern": "[x"}}}', "is not a 'regex'"),
    ("JSON", '{"minLength": -1}', "at $.minLength"),
    ("PROTOBUF", 'syntax = "proto3"; message A { string a = 1 }', "line 1:"),
    ("PROTOBUF", 'syntax = "proto3"; message A { string a = 1; int32 b = 1; }', "field number 1 is used twice"),
    ("PROTOBUF", 'syntax = "proto3"; message A { required string a = 1; }', "proto3 has no required fields"),
    ("PROTOBUF", 'syntax = "proto3"; enum E { A = 1; } message M { E e = 1; }', "first value must be 0"),
    ("PROTOBUF", 'syntax = "proto3"; message A { string a = 19001; }', "not allowed"),
    ("PROTOBUF", 'syntax = "proto3"; message A { reserved 2; string a = 2; }', "reserved"),
    ("PROTOBUF", 'syntax = "proto3"; enum E { A = 0; }', "declares no message"),
    ("XML", "<a/>", "unknown schema type"),
    ("AVRO", "   ", "schema is empty"),
]


@pytest.mark.parametrize(("schema_type", "text", "fragment"), INVALID, ids=[f"{t}:{f}" for t, _, f in INVALID])
def test_invalid_schemas_raise_readable_schema_errors(schema_type: str, text: str, fragment: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(schema_type, text)
    assert fragment in str(caught.value)


def test_avro_references() -> None:
    money = '{"type": "record", "name": "Money", "namespace": "shop", "fields": [{"name": "cents", "type": "long"}]}'
    price = '{"type": "record", "name": "shop.Price", "fields": [{"name": "amount", "type": "shop.Money"}]}'
    refs = {"shop.Price": price, "shop.Money": money}  # order does not matter: Price needs Money
    parsed = avro(record(field("price", "shop.Price"), field("unit", "Money")), refs)
    assert '"type":"shop.Money"' in parsed.canonical
    with pytest.raises(UnresolvedReference, match="shop.Money"):
        avro(record(field("price", "shop.Price")), {"shop.Price": price})
    with pytest.raises(UnresolvedReference, match="unknown Avro type 'shop.Money'"):
        avro(record(field("m", "shop.Money")))
    other_money = money.replace('"long"', '"int"')
    assert avro(record(field("m", "shop.Money")), {"shop.Money": other_money}).fingerprint != avro(
        record(field("m", "shop.Money")), {"shop.Money": money}).fingerprint


def test_json_references() -> None:
    customer = json.dumps({"$id": "https://example.com/customer.json", "type": "object",
                           "properties": {"name": {"type": "string"}, "address": {"$ref": "#/definitions/address"}},
                           "definitions": {"address": {"type": "object"}}})
    main = {"$id": "https://example.com/order.json", "type": "object",
            "properties": {"customer": {"$ref": "customer.json"}}}
    for name in ("customer.json", "https://example.com/customer.json"):
        validate = compile_validator(jschema(main, {name: customer}))
        validate({"customer": {"name": "Ada", "address": {}}})
        with pytest.raises(ValidationFailed) as caught:
            validate({"customer": {"address": []}})
        assert caught.value.path == "$.customer.address"
    with pytest.raises(UnresolvedReference, match="customer.json"):
        jschema(main)
    with pytest.raises(UnresolvedReference, match="points to nothing"):
        jschema({"$ref": "#/definitions/none"})


def test_protobuf_references() -> None:
    money = 'syntax = "proto3"; package common; message Money { int64 cents = 1; }'
    order = 'syntax = "proto3"; package shop; import "common/money.proto"; ' \
            'import "google/protobuf/timestamp.proto"; ' \
            "message Order { common.Money total = 1; google.protobuf.Timestamp at = 2; }"
    proto(order, {"common/money.proto": money})
    with pytest.raises(UnresolvedReference, match="common/money.proto"):
        proto(order)
    with pytest.raises(UnresolvedReference, match="unknown Protobuf type 'Missing'"):
        proto('syntax = "proto3"; message A { Missing m = 1; }')


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
_primitives = st.sampled_from(["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
_field_types = st.one_of(
    _primitives,
    st.builds(lambda t: {"type": "array", "items": t}, _primitives),
    st.builds(lambda t: {"type": "map", "values": t}, _primitives),
    st.builds(lambda t: ["null", t], _primitives.filter(lambda p: p != "null")),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_names, _field_types), min_size=1, max_size=8, unique_by=lambda f: f[0]), st.randoms())
def test_avro_canonical_form_is_idempotent_and_order_free(fields: list[tuple[str, Any]], rng: random.Random) -> None:
    schema = record(*(field(name, type_) for name, type_ in fields))
    first = avro(schema)
    assert parse_schema("AVRO", first.canonical).canonical == first.canonical
    assert parse_schema("AVRO", json.dumps(_shuffled(schema, rng), indent=2)).fingerprint == first.fingerprint


_json_leaf = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean"])},
    optional={"minimum": st.integers(-5, 5), "maxLength": st.integers(0, 9), "description": st.text(max_size=5)},
)
_json_schemas = st.recursive(
    _json_leaf,
    lambda inner: st.builds(lambda props: {"type": "object", "properties": props},
                            st.dictionaries(_names, inner, max_size=4)),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(_json_schemas, st.randoms())
def test_json_canonical_form_is_idempotent_and_order_free(schema: dict[str, Any], rng: random.Random) -> None:
    first = jschema(schema)
    assert parse_schema("JSON", first.canonical).canonical == first.canonical
    assert parse_schema("JSON", json.dumps(_shuffled(schema, rng), indent=1)).fingerprint == first.fingerprint
